"""The quality report: the card's numbers agree with SQL, the baseline runs on the stub, and the HTML
page renders in headless Chromium with every image loaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import query, run_generation
from scripted import GoodModel, failing_critique
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app

runner = CliRunner()
PLAN = {"hard_negative_rate": 0.3, "multi_source_rate": 0.3, "min_user_turns": 2, "max_user_turns": 2}
BASELINE_QUESTION = "What does this text say?"
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


SAME_QUESTION = "Hello, how much does a year of tuition cost?"


def _same_first_question(body: dict, n: int) -> dict | None:
    """Every first turn that is not a hard negative asks the same thing: planted exact duplicates."""
    text = " ".join(m["content"] for m in body["messages"])
    if "Write the person's first message." in text and "which the documents do not cover" not in text:
        return {"message": SAME_QUESTION}
    return None


def _reject_villagers(body: dict, n: int) -> dict | None:
    """The critic fails every 'local villager' sample; with max_revisions=0 they are rejected."""
    return (
        failing_critique(1) if "local villager" in " ".join(m["content"] for m in body["messages"]) else None
    )


@pytest.fixture(scope="module")
def reported(ingested_template, tmp_path_factory):
    """One generated run with planted rejections and duplicates, deduplicated, and its report."""
    root = tmp_path_factory.mktemp("report")
    db = root / "forge.duckdb"
    shutil.copy(ingested_template, db)
    model = GoodModel({"UserMessage": _same_first_question, "Critique": _reject_villagers})
    with StubServer(model) as stub:
        summary = run_generation(db, stub.url, n=10, seed=3, max_revisions=0, plan=PLAN)
    assert (
        summary.rejected == query(db, "SELECT count(*) FROM samples WHERE persona = 'local villager'")[0][0]
    )
    run_id = summary.run_id
    result = runner.invoke(app, ["dedup", run_id, "--db", str(db)])
    assert result.exit_code == 0, result.output
    first = query(
        db, "SELECT min(sample_id) FROM samples WHERE status = 'accepted' AND technique <> 'hard_negative'"
    )[0][0]
    baseline = StubServer(lambda body: BASELINE_QUESTION).start()
    try:
        result = runner.invoke(
            app,
            [
                "report",
                run_id,
                "--db",
                str(db),
                "--out",
                str(root / "report"),
                "--license",
                "cc-by-4.0",
                "--name",
                "Uni QA",
                "--baseline-url",
                baseline.url,
                "--baseline-model",
                "naive-model",
            ],
        )
        assert result.exit_code == 0, result.output
    finally:
        baseline.stop()
    return {"db": db, "run_id": run_id, "out": root / "report", "first": first, "baseline": baseline}


def test_card_numbers_match_sql(reported):
    db, out = reported["db"], reported["out"]
    card = (out / "README.md").read_text()
    data = json.loads((out / "report.json").read_text())
    assert card.startswith("---\nlicense: cc-by-4.0\n") and "# Uni QA" in card
    for tier, planned, accepted, rejected in query(
        db,
        "SELECT tier, count(*), count(*) FILTER (status = 'accepted'), count(*) FILTER (status = 'rejected') "
        "FROM samples GROUP BY 1",
    ):
        assert re.search(rf"^\| {tier} \| {planned} \| {accepted} \| {rejected} \| 0 \|", card, re.M), tier
    accepted, planted = query(
        db,
        "SELECT count(*) FILTER (status = 'accepted'), "
        "count(*) FILTER (status = 'accepted' AND technique <> 'hard_negative') FROM samples",
    )[0]
    drops = query(db, "SELECT kept_sample_id, method FROM dedup_drops")
    assert len(drops) == planted - 1 > 0 and set(drops) == {(reported["first"], "exact")}
    rates = data["rates"]
    assert (rates["accepted"], rates["dropped"], rates["dataset"]) == (
        accepted,
        planted - 1,
        accepted - planted + 1,
    )
    assert f"| acceptance rate | {100 * accepted / 10:.1f}% |" in card
    assert f"| near duplicates dropped | {100 * (planted - 1) / accepted:.1f}% |" in card
    assert f"| **in the dataset** (accepted, not dropped) | **{accepted - planted + 1}** |" in card
    assert query(db, "SELECT config_hash FROM runs")[0][0] in card
    for template, template_hash in query(db, "SELECT DISTINCT template, template_hash FROM llm_calls"):
        assert f"| {template} | `{template_hash}` |" in card
    hard = query(db, "SELECT avg((status = 'accepted')::int) FROM samples WHERE technique = 'hard_negative'")[
        0
    ][0]
    assert data["rates"]["hard_negative_refusal_rate"] == pytest.approx(hard)
    tokens_out = query(db, "SELECT sum(tokens_out) FROM llm_calls")[0][0]
    assert data["tokens"]["tokens_out"] == tokens_out
    assert f"{tokens_out:,} completion tokens" in card
    assert "| critic | stub-model |" in card


def test_baseline_uses_the_same_chunks_and_is_less_diverse(reported):
    out, db = reported["out"], reported["db"]
    requests = reported["baseline"].requests
    assert requests and all(r["model"] == "naive-model" for r in requests)
    seed_chunk = query(
        db,
        "SELECT c.text FROM retrievals r, unnest(r.chunk_ids) AS u(cid) JOIN chunks c ON c.chunk_id = u.cid "
        "WHERE r.purpose = 'seed' AND r.sample_id = ? LIMIT 1",
        reported["first"],
    )[0][0]
    assert seed_chunk in requests[0]["messages"][1]["content"]
    questions = [json.loads(line) for line in (out / "baseline.jsonl").read_text().splitlines()]
    assert [q["question"] for q in questions] == [BASELINE_QUESTION] * len(requests)
    diversity = json.loads((out / "report.json").read_text())["diversity"]
    assert diversity["baseline"]["status"] == "ok"
    assert diversity["baseline"]["metrics"]["mean_pairwise_distance"] == pytest.approx(0, abs=1e-5)
    assert "| naive baseline |" in (out / "README.md").read_text()


def test_every_plot_is_a_real_png(reported):
    import matplotlib.image

    html = (reported["out"] / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == 8
    for src in sources:
        pixels = matplotlib.image.imread(reported["out"] / src)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 0.01, f"{src} is blank"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const found = [...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);
  const pre = document.createElement('pre'); pre.id = 'imgcheck'; pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
});
</script>"""


def test_html_renders_with_every_image_loaded_in_headless_chromium(reported, tmp_path):
    browser = _chromium()
    if browser is None:
        if IN_CI:
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium not installed (apt-get install chromium)")
    out = reported["out"]
    html = (out / "index.html").read_text()
    # the wrapper sits next to index.html (same relative image paths) and adds one broken image, so a
    # checker that cannot see a failed load would fail this test too
    probe = out / "_imgcheck.html"
    probe.write_text(html.replace("</body>", f'<img src="plots/missing.png">{CHECK_SCRIPT}</body>'))
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
        probe.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    probe.unlink()
    found = re.search(r'<pre id="imgcheck">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no image report in the DOM (exit {done.returncode}): {done.stderr[-500:]}"
    images = {src: (complete, width) for src, complete, width in json.loads(found.group(1))}
    assert images.pop("plots/missing.png") == (True, 0)
    assert len(images) == 8
    assert all(width > 0 for _, width in images.values()), images


def test_report_without_baseline_says_it_was_skipped(reported, tmp_path):
    out = tmp_path / "r"
    result = runner.invoke(
        app, ["report", reported["run_id"], "--db", str(reported["db"]), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    assert "license: unknown" in card and "Baseline skipped: it needs an LLM" in card
    assert not (out / "baseline.jsonl").exists()
    assert "Baseline skipped" in result.stderr


def test_unreachable_baseline_still_writes_the_report(reported, tmp_path):
    with StubServer() as gone:
        url = gone.url
    out = tmp_path / "r"
    result = runner.invoke(
        app,
        ["report", reported["run_id"], "--db", str(reported["db"]), "--out", str(out), "--baseline-url", url],
    )
    assert result.exit_code == 0, result.output
    assert "Baseline failed: " in (out / "README.md").read_text()
    assert "warning: baseline:" in result.stderr


def test_unknown_run_is_one_line(reported, tmp_path):
    result = runner.invoke(app, ["report", "run-nope", "--db", str(reported["db"]), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "no run 'run-nope'" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_baseline_url_run_means_the_runs_own_generator_endpoint(reported):
    from teacherforge.dataset.report_baseline import resolve_endpoint
    from teacherforge.dataset.report_data import collect
    from teacherforge.store.database import connect

    con = connect(reported["db"], read_only=True)
    try:
        data = collect(con, reported["run_id"])
    finally:
        con.close()
    recorded = query(
        reported["db"], "SELECT payload->'generator'->>'url' FROM events WHERE type = 'run.started'"
    )[0][0]
    assert resolve_endpoint(data, "run", None) == (recorded.rstrip("/"), "stub-model")
    assert resolve_endpoint(data, "http://other/v1/", "m2") == ("http://other/v1", "m2")


def test_tone_match_per_persona_counts_every_user_turn_of_the_run(reported):
    db, out = reported["db"], reported["out"]
    data = json.loads((out / "report.json").read_text())
    card = (out / "README.md").read_text()
    generated = data["tone"]["generated"]
    per_persona = dict(
        query(
            db,
            "SELECT s.persona, count(*) FROM turns t JOIN samples s USING (sample_id) "
            "WHERE t.role = 'user' GROUP BY 1",
        )
    )
    planned = [r[0] for r in query(db, "SELECT DISTINCT persona FROM samples ORDER BY 1")]
    assert [r["persona"] for r in generated["personas"]] == planned and len(planned) >= 2
    assert {r["persona"]: r["turns"] for r in generated["personas"]} == per_persona
    assert generated["chance"] == pytest.approx(1 / len(planned))
    matched = sum(r["matched"] for r in generated["personas"])
    assert generated["match_rate"] == pytest.approx(matched / sum(per_persona.values()))
    assert "## Tone match per persona" in card
    first = generated["personas"][0]
    assert f"| {first['persona']} | {first['turns']} | {100 * first['match_rate']:.1f}% |" in card
    # the villagers were all rejected, so the dataset part has no villager turns
    dataset = {r["persona"]: r["turns"] for r in data["tone"]["dataset"]["personas"]}
    assert dataset["local villager"] == 0
