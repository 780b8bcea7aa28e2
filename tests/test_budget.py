"""Budgets: --dry-run plans and estimates without a model; --max-tokens and --max-cost stop a run at the
cap (no new samples, a run.budget_reached event) and a resume with a higher cap completes it exactly."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import query
from scripted import GoodModel, failing_critique
from stub_server import StubServer
from typer.testing import CliRunner

from teacherforge.cli.app import app
from teacherforge.graph.budget import Budget, BudgetError, CallMeter, prompt_chars

runner = CliRunner()
N = 10


def run_cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def dry_run(db, *extra: str) -> dict:
    result = run_cli("run", "--dry-run", "--n", N, "--db", db, "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dry_run_prints_the_plan_and_an_estimate_and_calls_nothing(db_path):
    before = query(db_path, "SELECT count(*) FROM events")
    report = dry_run(db_path, "--price-in", "1", "--price-out", "2")
    assert query(db_path, "SELECT count(*) FROM events") == before  # nothing written
    assert report["plan"]["tier"] == {"direct": 4, "edge": 2, "reasoning": 4}  # the default 40/40/20 mix
    for key in ("persona", "technique", "category"):
        assert sum(report["plan"][key].values()) == N
    est = report["estimate"]
    assert est["calls"] >= 3 * N and est["tokens_in"] > est["calls"] * 100 and est["max_calls"] > est["calls"]
    assert est["cost_usd"] == pytest.approx((est["tokens_in"] + 2 * est["tokens_out"]) / 1e6, abs=1e-4)
    assert "recorded" not in report  # no earlier run in this database yet


def test_dry_run_uses_recorded_averages_once_a_run_exists(db_path):
    """Averages of earlier runs of the same profile, per sample of those runs."""
    model = GoodModel(overrides={"Critique": lambda body, n: failing_critique() if n == 0 else None})
    with StubServer(model) as stub:
        assert run_cli("run", "--n", 3, "--db", db_path, "--llm-url", stub.url).exit_code == 0
        calls, tin = query(db_path, "SELECT count(*), sum(tokens_in) FROM llm_calls")[0]
        sql = "SELECT count(DISTINCT sample_id) FROM llm_calls WHERE agent = 'refiner'"
        assert query(db_path, sql)[0][0] == 1  # one of three refined: its refiner rate is a third per sample
        standard = dry_run(db_path, "--llm-url", stub.url)
    recorded = standard["recorded"]
    assert standard["profile"] == "standard"
    assert recorded["calls"] == pytest.approx(calls / 3 * N, abs=len(recorded["by_agent"]))
    assert recorded["tokens_in"] == pytest.approx(tin / 3 * N, rel=0.01)
    # the embedded model's dry run is of the small profile: a standard run's rates say nothing of it
    small = dry_run(db_path)
    assert small["profile"] == "small" and "recorded" not in small


def small_replies(tmp_path) -> str:
    """A config with max_tokens 300: every call reserves 300 completion tokens (the stub needs < 150)."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("max_tokens: 300\n")
    return str(cfg)


def test_max_tokens_stops_the_run_then_resume_with_a_higher_cap_completes_it(db_path, tmp_path):
    cfg = small_replies(tmp_path)
    with StubServer(GoodModel()) as stub:
        result = run_cli(
            "run", "--n", N, "--db", db_path, "--llm-url", stub.url, "--concurrency", 1, "--max-tokens", 3000,
            "--config", cfg,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        run_id = result.stdout.splitlines()[0]
        assert "budget reached" in result.stderr and f"--resume {run_id}" in result.stderr
        (payload,) = query(db_path, "SELECT payload FROM events WHERE type = 'run.budget_reached'")[0]
        reached = json.loads(payload)
        assert reached["cap"] == "max_tokens" and reached["limit"] == 3000 and 0 < reached["tokens"] <= 3000
        assert reached["under"] == 3000 - reached["tokens"] and reached["refused"]["max_tokens"] == 300
        assert reached["not_started"] > 0
        done = query(db_path, "SELECT count(*) FROM samples WHERE run_id = ?", run_id)[0][0]
        assert 0 < done < N
        assert query(db_path, "SELECT DISTINCT status FROM runs") == [("budget_reached",)]
        # the cap is for the whole run: resuming with the same cap starts nothing new
        resume = ("run", "--resume", run_id, "--db", db_path, "--llm-url", stub.url, "--max-tokens")
        again = run_cli(*resume, 3000)
        assert again.exit_code == 0 and "budget reached" in again.stderr
        assert query(db_path, "SELECT count(*) FROM samples WHERE run_id = ?", run_id)[0][0] == done
        final = run_cli(*resume, 10**7)
    assert final.exit_code == 0 and "budget reached" not in final.stderr
    assert query(db_path, "SELECT count(*), count(DISTINCT sample_id) FROM samples") == [(N, N)]


def test_max_cost_uses_the_prices_per_million_tokens(db_path, tmp_path):
    with StubServer(GoodModel()) as stub:
        result = run_cli(
            "run", "--n", N, "--db", db_path, "--llm-url", stub.url, "--concurrency", 1,
            "--max-cost", "0.002", "--price-in", "0.5", "--price-out", "1.5",
            "--config", small_replies(tmp_path),
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    (payload,) = query(db_path, "SELECT payload FROM events WHERE type = 'run.budget_reached'")[0]
    reached = json.loads(payload)
    assert reached["cap"] == "max_cost" and 0 < reached["cost_usd"] <= 0.002
    assert reached["under"] == pytest.approx(0.002 - reached["cost_usd"], abs=1e-6)
    assert "USD (" in result.stderr and " under)" in result.stderr
    assert reached["budget"] == {"max_cost": 0.002, "price_in": 0.5, "price_out": 1.5}
    assert query(db_path, "SELECT count(*) FROM samples")[0][0] < N


def test_a_cost_cap_without_prices_is_a_one_line_error(db_path):
    result = run_cli("run", "--n", 2, "--db", db_path, "--max-cost", "5")
    assert result.exit_code == 2 and "--price-in" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_meter_counts_tokens_and_cost():
    meter = CallMeter(Budget(max_cost=1.0, price_in=2.0, price_out=4.0))
    record = type("R", (), {"tokens_in": 200_000, "tokens_out": 100_000, "error": None})()
    meter.observe(record)
    assert meter.cost == pytest.approx(0.8) and meter.over_budget() is None
    meter.observe(record)
    assert meter.over_budget()["cap"] == "max_cost" and meter.ok_calls == 2
    with pytest.raises(BudgetError):
        Budget(max_tokens=0)


def test_concurrent_calls_reserve_their_tokens_so_the_run_never_passes_the_cap(db_path, tmp_path):
    """At concurrency 4 each call reserves max_tokens plus its prompt estimate before it is sent.

    Before, the cap was checked only on tokens already spent: the samples in flight went on calling
    the model after the cap, and the run ended thousands of tokens over it.
    """
    cfg = small_replies(tmp_path)  # the stub's replies stay far below it: it honours max_tokens
    cap = 12_000
    with StubServer(GoodModel()) as stub:
        args = ("run", "--n", N, "--db", db_path, "--llm-url", stub.url, "--config", cfg, "--concurrency", 4)
        result = run_cli(*args, "--max-tokens", cap, "--json")
        assert result.exit_code == 0, result.output
        run_id = result.stdout.splitlines()[0]
        spent_sql = "SELECT sum(tokens_in + tokens_out) FROM llm_calls WHERE run_id = ? AND NOT reused"
        spent = query(db_path, spent_sql, run_id)[0][0]
        assert 0 < spent <= cap
        (payload,) = query(db_path, "SELECT payload FROM events WHERE type = 'run.budget_reached'")[0]
        reached = json.loads(payload)
        assert (reached["cap"], reached["limit"], reached["tokens"]) == ("max_tokens", cap, spent)
        assert reached["under"] == cap - spent and "over" not in reached
        line = f"tokens {spent:,} of {cap:,} ({cap - spent:,} under)"
        assert line in " ".join(result.stderr.split())
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["budget"] == {"cap": "max_tokens", "limit": cap, "tokens": spent, "under": cap - spent}
        assert summary["failed"] == 0  # a call that did not fit leaves its sample unfinished, not failed
        # a resume with a higher cap finishes the run: every index once, nothing over the new cap
        final = run_cli("run", "--resume", run_id, *args[3:7], "--max-tokens", 10**6)
    assert final.exit_code == 0, final.output
    assert query(db_path, "SELECT count(*), count(DISTINCT sample_id) FROM samples") == [(N, N)]
    assert query(db_path, "SELECT DISTINCT status FROM samples") == [("accepted",)]


def test_a_call_bigger_than_the_whole_cap_is_never_sent_and_the_message_says_why(db_path):
    with StubServer(GoodModel()) as stub:
        result = run_cli("run", "--n", 2, "--db", db_path, "--llm-url", stub.url, "--max-tokens", 1000)
        sent = [b for b in stub.requests if b["messages"][0]["role"] == "system"]
    assert result.exit_code == 0, result.output
    assert sent == []  # max_tokens 3072 alone is over the cap: nothing went out
    message = " ".join(result.stderr.split())
    assert "budget reached (tokens 0 of 1,000 (1,000 under); the next call needed" in message
    assert "(max_tokens 3,072 + prompt ~" in message
    assert query(db_path, "SELECT DISTINCT status FROM runs") == [("budget_reached",)]


def test_the_gate_waits_for_calls_in_flight_and_refuses_only_when_none_can_free_room():
    import asyncio

    from teacherforge.agents.llm import CallRefused

    meter = CallMeter(Budget(max_tokens=1000))
    prompt = [{"role": "user", "content": "x" * 196}]  # 200 characters: 100 tokens before calibration
    used = type("R", (), {"tokens_in": 50, "tokens_out": 100, "error": None})()

    async def scenario() -> list[str]:
        order: list[str] = []
        first = await meter.admit(prompt, 400)  # 100 + 400 reserved
        assert (meter.reserved_in, meter.reserved_out, meter.in_flight) == (100, 400, 1)

        async def second():
            held = await meter.admit(prompt, 600)  # 700 does not fit next to 500: it waits
            order.append("second admitted")
            return held

        task = asyncio.create_task(second())
        await asyncio.sleep(0.01)
        order.append("first settles")
        meter.settle(first, used)
        meter.observe(used)  # 150 really used: 150 + 700 fits
        meter.settle(await task, used)
        meter.observe(used)
        assert meter.in_flight == 0 and meter.tokens == 300 and meter.tokens_per_char == 50 / 200
        calibrated = meter.reservation(prompt_chars(prompt), 0)  # 0.25 tokens/char + 10%
        assert calibrated.tokens_in in (55, 56)
        with pytest.raises(CallRefused) as refused:  # 300 + 56 + 700 > 1000 and nothing in flight
            await meter.admit(prompt, 700)
        assert refused.value.detail["cap"] == "max_tokens" and meter.in_flight == 0
        return order

    assert asyncio.run(scenario()) == ["first settles", "second admitted"]


def test_the_workers_keeper_frees_a_lost_workers_reservations_so_no_one_waits_for_good():
    """graph/remote_budget.py: attempts of a worker that died never settle; the driver tells the keeper."""
    from teacherforge.graph.remote_budget import BudgetKeeper

    async def scenario():
        keeper = BudgetKeeper(Budget(max_tokens=1000))
        lost = await keeper.admit(0, 40, 600)  # worker 0 holds ~610 tokens, then dies
        assert isinstance(lost, int)
        waiting = asyncio.create_task(keeper.admit(1, 40, 600))  # does not fit beside it: waits
        await asyncio.sleep(0.01)
        assert not waiting.done()
        assert await keeper.forget_worker(0) == 1
        ticket = await asyncio.wait_for(waiting, 1.0)  # the room came back
        await keeper.settle(lost, 5, 5)  # a late settle of the forgotten attempt changes nothing
        assert keeper.meter.tokens == 0 and keeper.meter.in_flight == 1
        await keeper.settle(ticket, 30, 100)
        assert keeper.meter.tokens == 130 and keeper.meter.in_flight == 0
        refused = await keeper.admit(1, 40, 900)  # 130 spent + ~910 > 1000, nothing in flight
        assert refused["cap"] == "max_tokens"

    asyncio.run(scenario())
