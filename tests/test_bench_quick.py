"""The benchmark's JSON contract: every key of the issue is present (no timing assertions)."""

from __future__ import annotations

import json

from teacherforge.evals.bench import __main__ as bench

TINY = {
    "overhead_n": 2,
    "levels": [1, 2],
    "per_level": 1,
    "log_samples": 5,
    "rss_sizes": [1, 2],
    "peer_calls": 4,
}


def test_quick_json_has_every_key(capsys, monkeypatch):
    monkeypatch.setattr(bench, "QUICK", TINY)
    bench.main(["--quick", "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1  # one JSON object, nothing else on stdout
    result = json.loads(lines[0])
    assert set(bench.KEYS) <= set(result)
    assert [k for k in result if k.endswith("_error")] == []
    assert result["quick"] is True and result["replay_events"] > 0 and result["rss_samples"] == [1, 2]
    assert set(result["concurrency_efficiency"]) == {"1", "2"}
    assert result["overhead_failed_samples"] == 0 and result["concurrency_failed_samples"] == 0
    assert result["real_model_ratio"] is None and "skipped" in result["real_model_note"]
    assert result["distilabel_ratio"] is not None or result["distilabel_note"]
