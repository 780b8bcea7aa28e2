"""Crash safety in CI: the small version of evals/crash_resume.py (3 kill -9s of a real run, resumed)."""

from __future__ import annotations

import pytest

from teacherforge.evals.crash_resume import crash_resume


@pytest.mark.slow  # three process start-ups plus ingest: about a minute, more on a busy machine
def test_three_kill_9s_then_resume_lose_and_duplicate_nothing(tmp_path):
    # Slow enough replies that generation outlasts three kills on a quiet machine too (n=12 at 0.1 s
    # finished before the second kill there).
    summary = crash_resume(kills=3, n=24, seed=3, latency_s=0.4, workdir=tmp_path)
    assert summary["kills"] == 3 and summary["processes"] >= 4
    assert summary["checks"] == dict.fromkeys(summary["checks"], True), summary
    assert summary["samples"] == summary["distinct_sample_ids"] == 24
    assert summary["lost_accepted"] == [] and summary["duplicated"] == 0 and summary["problems"] == []
