"""The planner: decides a sample's category, tier, persona and technique before any model call.

Deterministic from (run seed, sample index) alone, so a shard, a resumed run or a re-run with the
same seed produces the same plan for the same index without knowing about the other samples.
Tier and technique use low-discrepancy sequences (golden-ratio and sqrt(2) rotations), so even a
small run hits the configured mix closely instead of drifting the way independent draws do.
"""

from __future__ import annotations

import math
import random

from pydantic import BaseModel, Field, field_validator, model_validator

from teacherforge.agents.schemas import Persona, Plan, Technique, Tier

DEFAULT_PERSONAS = [
    Persona(name="anxious parent", description="Worried about safety, costs and dorms; asks many what-ifs."),
    Persona(name="ambitious student", description="Asks about accreditation, careers, exchange and merit."),
    Persona(
        name="confused transfer student",
        description="Coming from another school; complex questions about credit conversion and deadlines.",
    ),
    Persona(
        name="local villager",
        description="Simple, informal regional language and short sentences; not used to official terms.",
    ),
]

EVOL_OPERATORS = [
    "add a constraint (budget, deadline or eligibility condition)",
    "deepen: ask why or what happens if",
    "require multi-step reasoning across two facts",
    "concretize with the person's own specific situation",
]

EDGE_NOISE = [
    "vague wording with implied intent",
    "a few misspellings and no punctuation",
    "rumour-based premise that may be wrong",
    "mixes two questions in one run-on sentence",
]

DEFAULT_HARD_NEGATIVE_TOPICS = [
    "parking permits for visitors' electric cars",
    "the university's policy on pets in lecture halls",
    "visa sponsorship for a spouse's employer",
    "the cafeteria's halal certification body",
    "rules for drone flights over campus",
]

_GOLDEN = (math.sqrt(5) - 1) / 2
_SQRT2 = math.sqrt(2) - 1


class PlanSettings(BaseModel):
    """The plan's knobs; defaults follow the seed documents (40/40/20, four personas)."""

    model_config = {"extra": "forbid"}

    tier_mix: dict[Tier, float] = Field(default_factory=lambda: {"direct": 40, "reasoning": 40, "edge": 20})
    personas: list[Persona] = Field(default_factory=lambda: list(DEFAULT_PERSONAS), min_length=1)
    categories: list[str] | None = Field(default=None, description="Restrict to these categories.")
    hard_negative_rate: float = Field(default=0.10, ge=0, le=1)
    multi_source_rate: float = Field(default=0.15, ge=0, le=1)
    hard_negative_topics: list[str] = Field(default_factory=lambda: list(DEFAULT_HARD_NEGATIVE_TOPICS))
    min_user_turns: int = Field(default=2, ge=1, le=12)
    max_user_turns: int = Field(default=4, ge=1, le=12)

    @field_validator("tier_mix")
    @classmethod
    def _mix_sums_to_100(cls, mix: dict[str, float]) -> dict[str, float]:
        total = sum(mix.values())
        if abs(total - 100) > 1e-6 or any(v < 0 for v in mix.values()):
            raise ValueError(f"tier_mix must be non-negative percentages summing to 100 (got {total:g})")
        return mix

    @model_validator(mode="after")
    def _consistent(self) -> PlanSettings:
        if self.min_user_turns > self.max_user_turns:
            raise ValueError("min_user_turns must be <= max_user_turns")
        if self.hard_negative_rate + self.multi_source_rate > 1:
            raise ValueError("hard_negative_rate + multi_source_rate must be <= 1")
        if self.hard_negative_rate > 0 and not self.hard_negative_topics:
            raise ValueError("hard_negative_topics is empty but hard_negative_rate > 0")
        return self


def _rotation(index: int, step: float, seed: int) -> float:
    """A point in [0, 1) of a low-discrepancy sequence, offset per seed."""
    offset = random.Random(f"offset:{seed}:{step}").random()
    return (offset + index * step) % 1.0


def _pick_weighted(u: float, weights: dict[str, float]) -> str:
    total = sum(weights.values())
    acc = 0.0
    for key, weight in weights.items():
        acc += weight / total
        if u < acc:
            return key
    return next(reversed(weights))


def plan_sample(run_id: str, seed: int, index: int, settings: PlanSettings, categories: list[str]) -> Plan:
    """Plan sample ``index`` of a run. ``categories`` are the corpus's categories (sorted)."""
    rng = random.Random(f"plan:{seed}:{index}")
    tier = _pick_weighted(
        _rotation(index, _GOLDEN, seed), {k: v for k, v in settings.tier_mix.items() if v > 0}
    )
    u = _rotation(index, _SQRT2, seed)
    if u < settings.hard_negative_rate:
        technique = "hard_negative"
    elif u < settings.hard_negative_rate + settings.multi_source_rate:
        technique = "multi_source"
    else:
        technique = "standard"
    persona_order = list(settings.personas)
    random.Random(f"personas:{seed}").shuffle(persona_order)
    persona = persona_order[index % len(persona_order)]
    usable = [c for c in categories if settings.categories is None or c in settings.categories]
    category = None
    if usable:
        category_order = sorted(usable)
        random.Random(f"categories:{seed}").shuffle(category_order)
        category = category_order[index % len(category_order)]
    operators: list[str] = []
    noise: list[str] = []
    if tier in ("reasoning", "edge"):
        operators = rng.sample(EVOL_OPERATORS, k=2 if tier == "reasoning" else 1)
    if tier == "edge":
        noise = rng.sample(EDGE_NOISE, k=2)
    return Plan(
        sample_id=f"{run_id}-{index:05d}",
        index=index,
        category=category,
        tier=tier,
        persona=persona,
        technique=technique,
        user_turns=rng.randint(settings.min_user_turns, settings.max_user_turns),
        evol_operators=operators,
        edge_noise=noise,
        hard_negative_topic=rng.choice(settings.hard_negative_topics)
        if technique == "hard_negative"
        else None,
    )


class PlanSeed(BaseModel):
    """What a seed fixes about a plan (``run --from-eval``: a held-out question the student failed).

    The graph reads seeds from the database and passes them in; the planner only applies them, so a
    seeded plan is as deterministic as any other: same (run seed, index, seed) gives the same plan.
    """

    model_config = {"extra": "forbid"}

    tier: Tier
    user_turns: int = Field(ge=1, le=12)
    technique: Technique = "standard"
    category: str | None = None
    anchor_chunk_id: str | None = None


def plan_seeded(
    run_id: str, seed: int, index: int, settings: PlanSettings, categories: list[str], plan_seed: PlanSeed
) -> Plan:
    """The plan of sample ``index`` with the seed's tier, turns, technique and category imposed.

    Persona still rotates with the index; evol operators, edge noise and the hard-negative topic
    are drawn for the seed's tier and technique from their own per-index stream.
    """
    base = plan_sample(run_id, seed, index, settings, categories)
    rng = random.Random(f"seeded:{seed}:{index}")
    tier = plan_seed.tier
    operators = rng.sample(EVOL_OPERATORS, k=2 if tier == "reasoning" else 1) if tier != "direct" else []
    noise = rng.sample(EDGE_NOISE, k=2) if tier == "edge" else []
    topic = None
    if plan_seed.technique == "hard_negative":
        topic = rng.choice(settings.hard_negative_topics or DEFAULT_HARD_NEGATIVE_TOPICS)
    return base.model_copy(
        update={
            "category": plan_seed.category if plan_seed.category is not None else base.category,
            "tier": tier,
            "technique": plan_seed.technique,
            "user_turns": plan_seed.user_turns,
            "evol_operators": operators,
            "edge_noise": noise,
            "hard_negative_topic": topic,
            "anchor_chunk_id": plan_seed.anchor_chunk_id,
        }
    )
