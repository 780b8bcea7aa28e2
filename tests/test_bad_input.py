"""Bad input through the real CLI: each gets one line naming the file or key and the fix, no traceback,
skipped files are listed and recorded as events, and nothing already generated is lost."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, query, run_generation
from scripted import GoodModel
from stub_server import StubServer
from test_loaders_mixed import minimal_pdf
from typer.testing import CliRunner

from teacherforge.cli.app import app

runner = CliRunner()
GOOD = "# Fees\n\nTuition is 9,800 dollars per semester. It is due on 1 September.\n"


def one_line_error(result, *expected: str) -> None:
    """Exit 2, one line on stderr, no traceback, and every expected fragment in it."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:") and result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.output
    for fragment in expected:
        assert fragment in result.stderr, (fragment, result.stderr)


def hostile_folder(root: Path) -> tuple[Path, dict[str, str]]:
    """A folder of good and bad files; returns it and the reason fragment expected for each bad file."""
    from pypdf import PdfWriter

    fees = root / "docs" / "fees"
    fees.mkdir(parents=True)
    (fees / "good.md").write_text(GOOD)
    (fees / "good2.md").write_text(GOOD)
    (fees / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    (fees / "controls.txt").write_bytes(bytes([1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 16]) * 50 + b"text")
    (fees / "empty.txt").write_bytes(b"")
    (fees / "blank.md").write_text("  \n\n\t\n")
    japanese = "授業料は学期ごとに九千八百ドルです。支払いは九月一日までです。"
    (fees / "shift-jis.txt").write_bytes(japanese.encode("shift_jis"))
    (fees / "latin.txt").write_bytes("Caf\xe9 fees: the r\xe9sum\xe9 desk charges 5 euros.".encode("cp1252"))
    (fees / "utf16.txt").write_bytes("Housing deposits are 300 dollars and refundable.".encode("utf-16"))
    with (fees / "big.txt").open("wb") as handle:  # 50 MiB of real text
        line = b"Line of a very long export that nobody should embed in one go.\n"
        handle.write(line * (50 * 2**20 // len(line) + 1))
    (fees / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    pdf = minimal_pdf([["Refunds take 21 days."]])
    (fees / "truncated.pdf").write_bytes(pdf[: len(pdf) // 3])
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    (fees / "locked.pdf").write_bytes(buffer.getvalue())
    (fees / "bad.docx").write_bytes(b"PK\x03\x04 not a zip")
    (fees / "tool.exe").write_bytes(b"MZ\x90\x00")
    (fees / "records.jsonl").write_text(
        '{"id": "a", "text": "Meal plans cost 1,200 dollars."}\n{"id": "a", "text": "Parking is free."}\n'
    )
    (fees / "bad.jsonl").write_text('{"id": "x", "text": "ok"}\n{not json\n')
    expected = {
        "good2.md": "same text as",
        "image.md": "binary file",
        "controls.txt": "binary file",
        "empty.txt": "empty file",
        "blank.md": "empty file",
        "shift-jis.txt": "re-save it as UTF-8",
        "big.txt": "over the 20 MiB limit; split the file or raise --max-file-mb",
        "broken.pdf": "unreadable PDF",
        "truncated.pdf": "unreadable PDF",
        "locked.pdf": "encrypted PDF; save a copy without the password",
        "bad.docx": "unreadable DOCX",
        "tool.exe": "unsupported file type '.exe'",
        "records.jsonl#a": "duplicate record id",
        "bad.jsonl": "line 2 is not JSON",
    }
    return root / "docs", expected


def test_ingest_skips_every_bad_file_with_its_reason_listed_and_recorded(tmp_path):
    folder, expected = hostile_folder(tmp_path)
    db = tmp_path / "forge.duckdb"
    result = runner.invoke(app, ["ingest", str(folder), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    listed = {
        line.split("skipped ", 1)[1].split(": ", 1)[0].rsplit("/", 1)[1]: line.split(": ", 1)[1]
        for line in result.stdout.splitlines()
        if line.strip().startswith("skipped ")
    }
    assert set(listed) == set(expected)
    for name, fragment in expected.items():
        assert fragment in listed[name], (name, listed[name])
    assert f"{len(expected)} skipped" in result.stdout
    assert "latin.txt: read as cp1252" in result.stdout  # ingested, with a note to check it
    events = {
        Path(json.loads(p)["path"]).name: json.loads(p)["reason"]
        for (p,) in query(db, "SELECT payload FROM events WHERE type = 'document.skipped'")
    }
    assert events == {name: listed[name] for name in expected}
    ingested = sorted(Path(p).name for (p,) in query(db, "SELECT path FROM documents"))
    assert ingested == ["good.md", "latin.txt", "records.jsonl#a", "utf16.txt"]
    finished = json.loads(query(db, "SELECT payload FROM events WHERE type = 'ingest.finished'")[0][0])
    assert finished["skipped"] == len(expected) and finished["added"] == 4

    again = runner.invoke(app, ["ingest", str(folder), "--db", str(db)])  # re-ingest: same verdicts, no dupes
    assert again.exit_code == 0 and "0 new, 0 changed, 4 unchanged" in again.stdout
    assert query(db, "SELECT count(*) FROM documents")[0][0] == 4


def test_ingest_where_every_file_is_skipped_fails_but_records_why(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "blob.bin").write_bytes(b"\x00\x01\x02")
    (folder / "tool.exe").write_bytes(b"MZ\x90\x00")
    (folder / "empty.txt").write_bytes(b"")
    db = tmp_path / "forge.duckdb"
    result = runner.invoke(app, ["ingest", str(folder), "--db", str(db)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    last = result.stderr.strip().splitlines()[-1]  # the lines before it are the progress bar's
    assert last == "error: all 3 files were skipped (2 unsupported type, 1 empty); nothing was ingested"
    assert "skipped " in result.stdout  # each file is still listed with its reason
    assert query(db, "SELECT count(*) FROM events WHERE type = 'document.skipped'")[0][0] == 3
    finished = json.loads(query(db, "SELECT payload FROM events WHERE type = 'ingest.finished'")[0][0])
    assert finished["skipped"] == 3 and finished["added"] == 0

    (folder / "fees.md").write_text(GOOD)  # one good file among the bad ones: a normal ingest
    some = runner.invoke(app, ["ingest", str(folder), "--db", str(db)])
    assert some.exit_code == 0 and "1 new" in some.stdout and "3 skipped" in some.stdout, some.output
    again = runner.invoke(app, ["ingest", str(folder), "--db", str(db)])  # unchanged is not skipped
    assert again.exit_code == 0, again.output
    assert "1 unchanged" in again.stdout and "3 skipped" in again.stdout
    copy = tmp_path / "copy.md"
    copy.write_text(GOOD)  # the same text as an indexed file: skipped, and nothing else given
    duplicate = runner.invoke(app, ["ingest", str(copy), str(folder / "blob.bin"), "--db", str(db)])
    assert duplicate.exit_code == 2
    assert "all 2 files were skipped (1 duplicate, 1 unsupported type)" in duplicate.stderr


def test_max_file_mb_is_the_switch_for_big_files(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text(GOOD * 40)  # ~3 KB
    db = tmp_path / "forge.duckdb"
    result = runner.invoke(app, ["ingest", str(folder), "--db", str(db), "--max-file-mb", "0.001"])
    assert result.exit_code == 2 and "over the 0.001 MiB limit" in result.stdout  # nothing else to ingest
    last = result.stderr.strip().splitlines()[-1]
    assert last == "error: the only file was skipped (1 too large); nothing was ingested"
    result = runner.invoke(app, ["ingest", str(folder), "--db", str(db), "--max-file-mb", "1"])
    assert result.exit_code == 0 and "1 new" in result.stdout
    result = runner.invoke(app, ["ingest", str(folder), "--db", str(db), "--max-file-mb", "0"])
    one_line_error(result, "--max-file-mb")


def test_missing_paths_and_database_folders_are_named(tmp_path):
    one_line_error(
        runner.invoke(app, ["ingest", str(tmp_path / "nope"), "--db", str(tmp_path / "x.duckdb")]),
        str(tmp_path / "nope"),
        "no such file or folder",
    )
    missing = tmp_path / "no" / "such" / "forge.duckdb"
    for args in (
        ["ingest", str(EXAMPLES)],
        ["run", "--n", "1", "--llm-url", "http://127.0.0.1:9/v1"],
        ["sql", "select 1"],
        ["export", "--out", str(tmp_path / "o.jsonl")],
        ["replay", "s-1"],
        ["runs"],
        ["verify"],
    ):
        one_line_error(
            runner.invoke(app, [*args, "--db", str(missing)]), str(missing.parent), "does not exist", "--db"
        )


CONFIGS = {
    "malformed": ("n: 3\nplan:\n  tier_mix: {direct: 40\n", ["not valid YAML at line", "fix the syntax"]),
    "tabs": ("n: 2\n\tseed: 1\n", ["line 2", "spaces, not tabs"]),
    "list": ("- n: 3\n", ["top level must be a mapping"]),
    "unknown_key": ("plan:\n  tier_mixx: {direct: 100}\n", ["unknown key 'plan.tier_mixx'", "docs/cli.md"]),
    "unknown_tier": (
        "plan:\n  tier_mix: {direct: 50, reasoning: 30, edgy: 20}\n",
        ["plan.tier_mix", "unknown name 'edgy'", "'direct', 'reasoning' or 'edge'"],
    ),
    "unknown_persona": (
        "plan:\n  personas: [anxious parent, grumpy alumnus]\n",
        ["plan.personas.1", "unknown persona 'grumpy alumnus'", "built-in: anxious parent", "description"],
    ),
    "persona_fields": ("plan:\n  personas: [{name: x}]\n", ["plan.personas.0.description", "required"]),
    "mix_not_100": (
        "plan:\n  tier_mix: {direct: 50, reasoning: 20}\n",
        ["plan.tier_mix", "summing to 100", "70"],
    ),
    "negative_mix": ("plan:\n  tier_mix: {direct: 120, edge: -20}\n", ["plan.tier_mix", "non-negative"]),
    "unknown_rule": ("rules: {advisory: [bogus]}\n", ["rules.advisory", "unknown rule name(s) ['bogus']"]),
    "bad_type": ("n: many\n", ["n:", "valid integer", "(got 'many')"]),
    "zero_n": ("n: 0\n", ["n:", "greater than or equal to 1", "(got 0)"]),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bad_config_is_one_line_naming_file_key_and_fix(db_path, tmp_path, name):
    text, expected = CONFIGS[name]
    config = tmp_path / f"{name}.yaml"
    config.write_text(text)
    result = runner.invoke(app, ["run", "--db", str(db_path), "--config", str(config)])
    one_line_error(result, str(config), *expected)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda p: p.write_bytes(b"\xff\xfe\x00\x01binary"), ["not UTF-8 text; re-save it as UTF-8"]),
        (lambda p: p.mkdir(), ["cannot read", "pass a YAML file"]),
        (lambda p: None, ["no such config file"]),
    ],
)
def test_unreadable_config_files(db_path, tmp_path, setup, expected):
    config = tmp_path / "run.yaml"
    setup(config)
    result = runner.invoke(app, ["run", "--db", str(db_path), "--config", str(config)])
    one_line_error(result, str(config), *expected)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--n", "0"], ["--n", "greater than or equal to 1", "(got 0)"]),
        (["--n", "-5"], ["--n", "(got -5)"]),
        (["--concurrency", "0"], ["--concurrency", "(got 0)"]),
    ],
)
def test_bad_flags_name_the_flag(db_path, flags, expected):
    one_line_error(runner.invoke(app, ["run", "--db", str(db_path), *flags]), *expected)


def teacherforge(*args: str) -> subprocess.CompletedProcess:
    """The installed CLI in a real process, as a user runs it (a failed run exits and frees the file)."""
    command = [sys.executable, "-m", "teacherforge.cli.app", *args]
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_failed_starts_leave_a_previous_run_intact(db_path, tmp_path):
    with StubServer(GoodModel()) as stub:
        summary = run_generation(db_path, stub.url, n=2)  # no writer lock left in this process
        assert summary.accepted + summary.rejected == 2
        before = query(db_path, "SELECT event_id, payload FROM events ORDER BY event_id")
        samples = query(db_path, "SELECT sample_id, status FROM samples ORDER BY 1")
        bad = tmp_path / "bad.yaml"
        bad.write_text("plan:\n  tier_mix: {direct: 50, reasoning: 20}\n")
        other = tmp_path / "other.yaml"
        other.write_text("plan:\n  categories: [fees, parking]\n")
        attempts = [
            (["--config", str(bad)], "summing to 100"),
            (["--n", "0"], "--n"),
            (["--config", str(other), "--llm-url", stub.url], "plan.categories: ['parking'] not in the"),
        ]
        for flags, fragment in attempts:
            done = teacherforge("run", "--db", str(db_path), *flags)
            assert done.returncode == 2, done.stderr
            assert "Traceback" not in done.stderr and fragment in done.stderr.strip().splitlines()[-1]
    assert query(db_path, "SELECT event_id, payload FROM events ORDER BY event_id") == before
    assert query(db_path, "SELECT sample_id, status FROM samples ORDER BY 1") == samples
    verify = runner.invoke(app, ["verify", "--db", str(db_path)])
    assert verify.exit_code == 0, verify.output
    out = tmp_path / "data.jsonl"
    assert runner.invoke(app, ["export", "--db", str(db_path), "--out", str(out)]).exit_code == 0
    assert len(out.read_text().splitlines()) == sum(1 for _, status in samples if status == "accepted")
