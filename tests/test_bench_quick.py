"""The benchmark's JSON contract: every key of the issue is present (no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import os

from teacherforge.evals.bench import __main__ as bench

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
TINY = {
    "overhead_n": 2,
    "floor_samples": 10,
    "levels": [1, 2],
    "per_level": 1,
    "log_samples": 5,
    "rss_sizes": [1, 2],
    "peer_calls": 16,
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
    assert all(result[key] > 0 for key in bench.FLOOR_KEYS)  # the floor's parts were measured
    assert result["real_model_ratio"] is None and "skipped" in result["real_model_note"]
    if importlib.util.find_spec("distilabel") or IN_CI:  # CI installs the bench extra: never null there
        ratio, wall = result["distilabel_ratio"], result.get("distilabel_ratio_wall")
        assert ratio is not None and ratio > 0 and wall is not None and wall > 0, result["distilabel_note"]
        assert result["tf_calls"] >= 16 and result["distilabel_calls"] == result["tf_calls"]
        assert "--quick" in result["distilabel_note"]
    else:
        assert result["distilabel_ratio"] is None and "not installed" in result["distilabel_note"]
