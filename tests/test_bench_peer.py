"""The distilabel peer of ``python -m evals.bench``: the steady-state rate and the peer's JSON.

The rate function is checked on synthetic arrival times, where the right answer is known; the peer
runs for real on the stub with a few dozen calls. No timing is asserted, only that the figures are
there and positive.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from teacherforge.evals.bench import pipeline_bench
from teacherforge.evals.bench.pipeline_bench import steady_rate

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def test_steady_rate_leaves_out_a_start_up_gap_and_the_drain():
    probe = [0.0, 0.01, 0.02]  # a few calls, then 30 s of start-up before the steady state
    steady = [30.0 + i / 100 for i in range(1000)]  # 100 calls/s
    drain = [steady[-1] + 1.0 + i for i in range(20)]  # the last calls trickle in, 1 s apart
    arrivals = probe + steady + drain
    got = steady_rate(list(reversed(arrivals)))  # order does not matter
    assert got["calls"] == 1023
    assert got["calls_per_s"] == pytest.approx(100.0, rel=1e-9)
    assert got["window_calls"] == 920 - 102  # the 10th to the 90th percentile arrival, by count
    naive = len(arrivals) / (arrivals[-1] - arrivals[0])  # what a first-to-last rate would say
    assert naive < 25


def test_steady_rate_of_batches_sent_at_once():
    """distilabel's pattern: a batch of 8 requests at once, the next batch 0.1 s later: 80 calls/s."""
    arrivals = [b * 0.1 + i * 1e-4 for b in range(250) for i in range(8)]
    assert steady_rate(arrivals)["calls_per_s"] == pytest.approx(80.0, rel=0.02)


@pytest.mark.parametrize("arrivals", [[], [5.0], [5.0, 5.0, 5.0]])
def test_steady_rate_without_a_window_is_none(arrivals):
    assert steady_rate(arrivals)["calls_per_s"] is None


def test_peer_reports_a_steady_state_distilabel_ratio(request, tmp_path):
    if importlib.util.find_spec("distilabel") is None:
        if IN_CI:
            pytest.fail('distilabel is not installed; CI must install the extra: pip install -e ".[bench]"')
        pytest.skip('distilabel not installed (pip install "teacherforge[bench]")')
    template = request.getfixturevalue("ingested_template")  # only now: ingesting takes seconds
    out = pipeline_bench.peer(template, tmp_path, calls=40, concurrency=4)
    assert "failed" not in out["distilabel_note"], out["distilabel_note"]
    for key in ("distilabel_ratio", "distilabel_ratio_wall", "tf_calls_per_s_steady"):
        assert isinstance(out[key], float) and out[key] > 0, (key, out)
    assert out["distilabel_calls_per_s_steady"] > 0 and out["distilabel_calls_per_s_wall"] > 0
    assert out["tf_calls"] >= 40 and out["distilabel_calls"] == out["tf_calls"]
    assert out["distilabel_generated"] == out["distilabel_rows"] == out["tf_calls"]
    assert out["tf_failed_samples"] == 0 and out["peer_concurrency"] == 4
