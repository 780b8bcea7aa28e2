"""``run --from-eval``: the held-out questions the student failed seed the next round.

The eval is recorded with the real payload builder (student/scoring.py) on stub-generated
conversations, so no training is needed here; test_student_loop.py covers a real eval.
"""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest
from conftest import query, run_generation
from scripted import GoodModel, http_error
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.agents.planner import PlanSeed, PlanSettings, plan_sample, plan_seeded
from teacherforge.cli.app import app
from teacherforge.dataset.export import openai_record
from teacherforge.graph.feedback import HARDER
from teacherforge.store.database import connect
from teacherforge.store.eval_queries import SEEDED_SAMPLES_SQL
from teacherforge.store.events import EventLog
from teacherforge.store.projection import fold_run
from teacherforge.store.views import create_views
from teacherforge.student.items import build_items
from teacherforge.student.scoring import item_payload, score_rows

CATEGORIES = ["admissions", "fees", "housing", "scholarships"]
SYSTEMS = ("teacher", "student_base", "student_tuned")
PLAN = {"min_user_turns": 1, "max_user_turns": 2, "hard_negative_rate": 0.25, "multi_source_rate": 0}


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    gc.collect()  # the in-process command leaves its DuckDB connection to the collector
    return result


def seeded(db, run_id: str) -> list[tuple]:
    """The docs/student.md lineage recipe, for one run."""
    return query(db, f"SELECT * FROM ({SEEDED_SAMPLES_SQL}) WHERE run_id = ? ORDER BY sample_id", run_id)


def seed_retrieval(db, sample_id: str) -> list[tuple]:
    sql = "SELECT chunk_ids, mode FROM retrievals WHERE sample_id = ? AND purpose = 'seed'"
    return query(db, sql, sample_id)


def planned(db, sample_id: str) -> dict:
    sql = "SELECT payload FROM live_events WHERE sample_id = ? AND type = 'sample.planned'"
    return json.loads(query(db, sql, sample_id)[0][0])


def test_a_seeded_plan_is_deterministic_and_takes_the_seeds_tier_turns_and_technique():
    seed = PlanSeed(
        tier="edge", user_turns=3, technique="hard_negative", category="fees", anchor_chunk_id="c-1"
    )
    a = plan_seeded("r", 7, 4, PlanSettings(), CATEGORIES, seed)
    assert a == plan_seeded("r", 7, 4, PlanSettings(), CATEGORIES, seed)
    assert (a.tier, a.user_turns, a.technique, a.category, a.anchor_chunk_id) == (
        "edge", 3, "hard_negative", "fees", "c-1"
    )  # fmt: skip
    assert len(a.edge_noise) == 2 and len(a.evol_operators) == 1 and a.hard_negative_topic
    plain = plan_sample("r", 7, 4, PlanSettings(), CATEGORIES)
    assert (a.sample_id, a.persona) == (plain.sample_id, plain.persona)  # the rotation is untouched
    reasoning = plan_seeded("r", 7, 4, PlanSettings(), CATEGORIES, PlanSeed(tier="reasoning", user_turns=2))
    assert len(reasoning.evol_operators) == 2 and not reasoning.edge_noise
    assert reasoning.hard_negative_topic is None and reasoning.category == plain.category


def _unit_embed(texts: list[str]) -> np.ndarray:
    return np.full((len(texts), 4), 0.5)


@pytest.fixture(scope="module")
def evaluated(ingested_template, tmp_path_factory):
    """A stub run, then an eval over its conversations: the tuned student fails some items.

    Returns (db, eval_id, payloads of the items the tuned student failed).
    """
    db = tmp_path_factory.mktemp("from_eval") / "forge.duckdb"
    db.write_bytes(ingested_template.read_bytes())
    with StubServer(GoodModel()) as stub:
        summary = run_generation(db, stub.url, n=6, seed=3, plan=PLAN)
    con = connect(db)
    create_views(con)
    records = [openai_record(v, "field") for v in fold_run(con, summary.run_id) if v.status == "accepted"]
    from teacherforge.student.data import Record

    records = [Record(messages=r["messages"], metadata=r["metadata"]) for r in records]
    eval_id = "eval-test-0001"
    items = build_items(records, eval_id, max_items=4)
    verdicts = {}
    for n, item in enumerate(items):
        item.chunks = [{"chunk_id": c} for c in item.record.metadata["source_chunk_ids"][:3]]
        # item 1 is handled right (a refusal if it is a hard negative); every other answer is a wrong guess
        refusal = ("Sorry, the documents do not cover that.", "refused")
        right = refusal if item.should_refuse else ("ok", "correct")
        tuned, tuned_verdict = right if n == 1 else (f"a guess {n}", "wrong")
        item.answers = {"teacher": item.reference, "student_base": "", "student_tuned": tuned}
        for system, verdict in zip(SYSTEMS, ("correct", "wrong", tuned_verdict), strict=True):
            verdicts[(item.item_id, system)] = {"verdict": verdict, "reason": f"{system} says so"}
    rows = score_rows(items, SYSTEMS, verdicts, _unit_embed)
    log = EventLog(con)
    log.append(eval_id, "eval.started", {"eval_id": eval_id, "items": len(items)})
    payloads = [item_payload(eval_id, item, rows) for item in items]
    for payload in payloads:
        log.append(eval_id, "eval.item", payload)
    log.append(eval_id, "eval.finished", {"status": "finished", "summary": {}})
    log.close()
    con.close()
    failed = [p for p in payloads if p["item_id"] != items[1].item_id]
    assert len(items) == 4 and len(failed) == 3
    return db, eval_id, failed


def test_failed_items_seed_samples_with_their_chunks_a_harder_tier_and_sql_lineage(evaluated, tmp_path):
    db, eval_id, failed = evaluated
    work = tmp_path / "forge.duckdb"
    work.write_bytes(db.read_bytes())
    with StubServer(GoodModel()) as stub:
        result = cli("run", "--from-eval", eval_id, "--db", work, "--llm-url", stub.url, "--json")
    assert result.exit_code == 0, result.output
    run_id = result.stdout.splitlines()[0]
    assert f"seeding {len(failed)} sample(s)" in result.stderr
    lineage = seeded(work, run_id)
    assert [r[6] for r in lineage] == [p["item_id"] for p in failed]  # one sample per failure, in order
    by_sample = {r[0]: r for r in lineage}
    for index, item in enumerate(failed):
        sample_id = f"{run_id}-{index:05d}"
        row = by_sample[sample_id]
        _, _, status, tier, user_turns, eval_col, _, failed_sample, verdict, why, chunk_ids = row
        assert (eval_col, failed_sample, verdict) == (eval_id, item["source_sample_id"], "wrong")
        assert chunk_ids == item["retrieved_chunk_ids"] and why.startswith("student_tuned ")
        assert tier == HARDER[item["tier"]]
        expected_turns = item["user_turns"] + 1 if item["tier"] == "edge" else item["user_turns"]
        assert user_turns == expected_turns and status in ("accepted", "rejected")
        # the item's chunks are the seed context, not a random anchor
        assert seed_retrieval(work, sample_id) == [(item["retrieved_chunk_ids"], "seeded")]
        plan = planned(work, sample_id)
        assert plan["anchor_chunk_id"] == item["retrieved_chunk_ids"][0]
        assert plan["technique"] == item["technique"]
    started = query(work, "SELECT payload->>'from_eval', json_array_length(payload->'plan_seeds') "
                    "FROM events WHERE run_id = ? AND type = 'run.started'", run_id)  # fmt: skip
    assert started == [(eval_id, len(failed))]


def test_n_repeats_the_failures_round_robin_and_the_same_seed_plans_the_same(evaluated, tmp_path):
    db, eval_id, failed = evaluated
    work = tmp_path / "forge.duckdb"
    work.write_bytes(db.read_bytes())
    runs = []
    with StubServer(GoodModel()) as stub:
        for _ in range(2):
            result = cli("run", "--from-eval", eval_id, "--n", 4, "--db", work, "--llm-url", stub.url)
            assert result.exit_code == 0, result.output
            runs.append(result.stdout.splitlines()[0])
    assert [r[6] for r in seeded(work, runs[0])] == [failed[i % len(failed)]["item_id"] for i in range(4)]
    plans = [
        query(work, "SELECT payload->'persona', tier, payload->'evol_operators' FROM events e JOIN samples s "
              "USING (sample_id) WHERE e.type = 'sample.planned' AND s.run_id = ? ORDER BY sample_id", run)
        for run in runs
    ]  # fmt: skip
    assert plans[0] == plans[1]  # deterministic: same seed, index and eval give the same plans


def test_resume_and_fork_keep_the_seed(evaluated, tmp_path):
    db, eval_id, failed = evaluated
    work = tmp_path / "forge.duckdb"
    work.write_bytes(db.read_bytes())
    cfg = tmp_path / "run.yaml"
    cfg.write_text("max_attempts: 1\n")
    with StubServer(GoodModel({"Critique": lambda body, n: http_error(503)})) as stub:
        first = cli("run", "--from-eval", eval_id, "--n", 1, "--db", work, "--llm-url", stub.url,
                    "--config", cfg)  # fmt: skip
    run_id = first.stdout.splitlines()[0]
    assert query(work, "SELECT status FROM samples WHERE run_id = ?", run_id) == [("failed",)]
    with StubServer(GoodModel()) as stub:
        resumed = cli("run", "--resume", run_id, "--db", work, "--llm-url", stub.url)
    assert resumed.exit_code == 0, resumed.output
    sample_id = f"{run_id}-00000"
    assert query(work, "SELECT status FROM samples WHERE sample_id = ?", sample_id) == [("accepted",)]
    assert seed_retrieval(work, sample_id) == [(failed[0]["retrieved_chunk_ids"], "seeded")]
    sql = "SELECT event_id FROM events WHERE sample_id = ? AND type = 'critique.done'"
    critique = query(work, sql, sample_id)
    with StubServer(GoodModel()) as stub:
        forked = cli("replay", sample_id, "--from", critique[0][0], "--db", work, "--llm-url", stub.url,
                     "--format", "json")  # fmt: skip
    assert forked.exit_code == 0, forked.output
    replay = json.loads(forked.stdout)
    assert replay["plan"]["seeded_from"]["eval_item_id"] == failed[0]["item_id"]
    assert replay["plan"]["tier"] == HARDER[failed[0]["tier"]]
    assert seed_retrieval(work, replay["sample_id"]) == [(failed[0]["retrieved_chunk_ids"], "seeded")]


def test_bad_eval_ids_are_one_line_errors(evaluated, tmp_path):
    db, eval_id, _ = evaluated
    missing = cli("run", "--from-eval", "eval-nope", "--db", db, "--llm-url", "http://127.0.0.1:9/v1")
    assert missing.exit_code == 2 and "no eval items for 'eval-nope'" in missing.stderr
    both = cli("run", "--from-eval", eval_id, "--resume", "run-x", "--db", db)
    assert both.exit_code == 2 and "exclude each other" in both.stderr


def test_the_lineage_recipe_in_docs_is_the_one_tested_here():
    from conftest import ROOT

    doc = " ".join((ROOT / "docs" / "student.md").read_text().split())
    assert " ".join(SEEDED_SAMPLES_SQL.split()) + ";" in doc


@pytest.mark.parametrize("index", [0, 1])
def test_a_resumed_fork_of_a_seeded_sample_keeps_its_seed_index_and_lineage(evaluated, tmp_path, index):
    """``run --resume FORK_RUN`` restarts the fork's own sample with the parent's seed and lineage.

    The fork is a one-sample run at the parent's plan index; resume used to walk indexes 0..n-1 with
    the run's ``plan_seeds`` (a fork has none): it re-planned index 0 unseeded and without its parent
    (index 0), or planned a new sample 0 and left the fork unfinished (index 1).
    """
    db, eval_id, failed = evaluated
    work = tmp_path / "forge.duckdb"
    work.write_bytes(db.read_bytes())
    cfg = tmp_path / "run.yaml"
    cfg.write_text("max_attempts: 1\n")
    with StubServer(GoodModel()) as stub:
        first = cli("run", "--from-eval", eval_id, "--n", index + 1, "--db", work, "--llm-url", stub.url,
                    "--config", cfg)  # fmt: skip
    assert first.exit_code == 0, first.output
    parent = f"{first.stdout.splitlines()[0]}-{index:05d}"
    turn = query(work, "SELECT event_id FROM events WHERE sample_id = ? AND type = 'turn.added' "
                 "ORDER BY seq LIMIT 1", parent)[0][0]  # fmt: skip
    failing_critic = GoodModel({"Critique": lambda body, n: http_error(503)}, first_question=100)
    with StubServer(failing_critic) as stub:
        forked = cli(
            "replay", parent, "--from", turn, "--db", work, "--llm-url", stub.url, "--format", "json"
        )
    assert forked.exit_code == 0, forked.output
    fork_id = json.loads(forked.stdout)["sample_id"]
    fork_run = fork_id.rsplit("-", 1)[0]
    assert fork_id == f"{fork_run}-{index:05d}"
    assert query(work, "SELECT status FROM samples WHERE sample_id = ?", fork_id) == [("failed",)]
    before = planned(work, fork_id)
    assert before["seeded_from"]["eval_item_id"] == failed[index]["item_id"]
    with StubServer(GoodModel()) as stub:
        resumed = cli("run", "--resume", fork_run, "--db", work, "--llm-url", stub.url, "--json")
    assert resumed.exit_code == 0, resumed.output
    assert "1 to (re)generate" in resumed.stderr
    assert query(work, "SELECT sample_id, status FROM samples WHERE run_id = ?", fork_run) == [
        (fork_id, "accepted")
    ]  # the fork's own sample, no new sample 0
    after = planned(work, fork_id)
    for key in ("tier", "user_turns", "technique", "category", "persona", "anchor_chunk_id", "seeded_from"):
        assert after[key] == before[key], key
    assert (after["parent_sample_id"], after["forked_from_event"]) == (parent, turn)
    assert seed_retrieval(work, fork_id)[-1] == (failed[index]["retrieved_chunk_ids"], "seeded")
    lineage = query(work, "SELECT parent_sample_id FROM samples WHERE sample_id = ?", fork_id)
    assert lineage == [(parent,)]
