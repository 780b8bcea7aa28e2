"""The planner is deterministic per (seed, index) and follows the configured mix closely."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from teacherforge.agents.planner import PlanSettings, plan_sample

CATEGORIES = ["admissions", "fees", "housing", "scholarships"]


def test_same_seed_and_index_give_the_same_plan_regardless_of_run_size():
    settings = PlanSettings()
    a = [plan_sample("r", 11, i, settings, CATEGORIES) for i in range(50)]
    b = [plan_sample("r", 11, i, settings, CATEGORIES) for i in range(50, -1, -1)][::-1][:50]
    assert [p.model_dump() for p in a] == [p.model_dump() for p in b]
    assert a != [plan_sample("r", 12, i, settings, CATEGORIES) for i in range(50)]


def test_tier_and_technique_mix_match_configuration():
    settings = PlanSettings()
    plans = [plan_sample("r", 5, i, settings, CATEGORIES) for i in range(1000)]
    tiers = Counter(p.tier for p in plans)
    assert (
        abs(tiers["direct"] - 400) <= 5
        and abs(tiers["reasoning"] - 400) <= 5
        and abs(tiers["edge"] - 200) <= 5
    )
    techniques = Counter(p.technique for p in plans)
    assert abs(techniques["hard_negative"] - 100) <= 5 and abs(techniques["multi_source"] - 150) <= 5
    assert set(Counter(p.persona.name for p in plans).values()) == {250}
    assert set(Counter(p.category for p in plans).values()) == {250}
    assert all(2 <= p.user_turns <= 4 for p in plans)


def test_small_runs_already_follow_the_mix():
    plans = [plan_sample("r", 0, i, PlanSettings(), CATEGORIES) for i in range(10)]
    assert Counter(p.tier for p in plans) == {"direct": 4, "reasoning": 4, "edge": 2}


def test_tiers_get_their_operators_and_hard_negatives_their_topic():
    for plan in (plan_sample("r", 1, i, PlanSettings(), CATEGORIES) for i in range(100)):
        assert bool(plan.evol_operators) == (plan.tier != "direct")
        assert bool(plan.edge_noise) == (plan.tier == "edge")
        assert (plan.hard_negative_topic is not None) == (plan.technique == "hard_negative")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"tier_mix": {"direct": 50, "reasoning": 20}}, "summing to 100"),
        ({"tier_mix": {"direct": 100, "expert": 0}}, "tier_mix.expert"),
        ({"min_user_turns": 4, "max_user_turns": 2}, "min_user_turns"),
        ({"hard_negative_rate": 0.7, "multi_source_rate": 0.5}, "<= 1"),
    ],
)
def test_bad_settings_are_rejected(settings, message):
    with pytest.raises(ValidationError) as info:
        PlanSettings.model_validate(settings)
    assert message in str(info.value)
