"""Experiments on live traffic: A/B(/n) tests, canary rollouts and bandits between model versions.

An :class:`Experiment` is kept in the store (``experiments``) as JSON, so every serving
worker, the ``tailor worker`` and the dashboard read the same one. Its arms name registry
versions of one engine; the first arm is the control.

* ``ab``: each subject is assigned by a hash of (salt, subject) in proportion to the arms'
  weights (:func:`tailor.lifecycle.experiments.assign`): sticky across requests, processes
  and restarts.
* ``canary``: two arms, the serving version and the new one. The new one gets the share of
  the current step (5% → 25% → 50% → 100% by default); the worker moves to the next step
  while the guardrails hold and rolls back (share 0, status ``rolled_back``) when one breaks.
  The hash point of a subject does not change between steps, so a subject once moved to the
  canary stays there as its share grows.
* ``bandit``: each request draws an arm by Thompson sampling (or epsilon-greedy) over the
  arms' click rates, which the worker updates from the attributed clicks; the propensity of
  each draw is logged for off-policy evaluation.

What decides which arm answered a request is logged with the answer
(``served_recommendations``): exposures are the ``impression`` events carrying its
``recommendation_id`` (:mod:`tailor.lifecycle.attribution`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tailor.lifecycle.bandits import Bandit
from tailor.lifecycle.experiments import assign
from tailor.lifecycle.registry import ALIAS, ENGINES, VERSION_LENGTH
from tailor.store.base import Store

Kind = Literal["ab", "canary", "bandit"]
Status = Literal["running", "stopped", "completed", "rolled_back"]
Metric = Literal["ctr", "click", "add_to_cart", "purchase", "revenue"]
DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
Count = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=ALIAS.pattern, description="Arm name, e.g. control.")]
    version: Annotated[
        str, Field(min_length=1, max_length=VERSION_LENGTH, description="Registry version.")
    ]
    weight: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] = 1.0


class Guardrail(BaseModel):
    """The treatment's ``metric`` must not be worse than the control's by more than
    ``max_drop`` (relative) with 95% confidence; when it is, the guardrail breaks."""

    model_config = ConfigDict(extra="forbid")

    metric: Metric
    max_drop: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=ALIAS.pattern)]
    kind: Kind = "ab"
    engine: Literal["recommend"] = "recommend"
    arms: Annotated[list[Arm], Field(min_length=2, max_length=8)]
    salt: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    status: Status = "running"
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime | None = None
    primary_metric: Metric = "ctr"
    guardrails: Annotated[list[Guardrail], Field(max_length=8)] = Field(
        default_factory=lambda: [Guardrail(metric="ctr")]
    )
    window_days: Annotated[float, Field(gt=0, le=90, allow_inf_nan=False)] = 7.0
    """Conversions count within this many days after a subject's first exposure."""
    min_users: Annotated[int, Field(ge=1, le=10_000_000)] = 200
    """Per arm, before a canary step may advance or a verdict is called."""
    steps: Annotated[list[Annotated[float, Field(gt=0, le=100)]], Field(max_length=10)] = Field(
        default_factory=lambda: list(DEFAULT_STEPS)
    )
    step: int = 0
    """Index into ``steps`` of the canary's current share."""
    epsilon: Annotated[float, Field(ge=0, le=1)] | None = None
    """Bandits: explore with this probability instead of Thompson sampling."""
    successes: list[Count] = Field(default_factory=list)
    failures: list[Count] = Field(default_factory=list)
    """Bandits: the clicks and unclicked answers attributed to each arm so far."""
    history: list[dict] = Field(default_factory=list)
    """What the worker decided and why (step moves, rollbacks, completion)."""

    @field_validator("arms")
    @classmethod
    def _distinct_arms(cls, arms: list[Arm]) -> list[Arm]:
        names = [arm.name for arm in arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must differ, got {names}")
        return arms

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        if self.kind == "canary":
            if len(self.arms) != 2:
                raise ValueError("a canary has two arms: the serving version, then the new one")
            if self.steps != sorted(self.steps) or self.steps[-1] != 100:
                raise ValueError(f"canary steps must rise to 100, got {self.steps}")
            if not 0 <= self.step < len(self.steps):
                raise ValueError(f"step {self.step} is outside steps {self.steps}")
        elif self.kind == "ab" and sum(arm.weight for arm in self.arms) <= 0:
            raise ValueError("at least one arm needs a positive weight")
        for counts in (self.successes, self.failures):
            if counts and len(counts) != len(self.arms):
                raise ValueError("bandit counts need one value per arm")
        return self

    @property
    def arm_names(self) -> list[str]:
        return [arm.name for arm in self.arms]

    @property
    def running(self) -> bool:
        return self.status == "running"

    def weights(self) -> list[float]:
        """The planned share of each arm now (a canary's from its step)."""
        if self.kind == "canary":
            share = self.steps[self.step] if self.running else 0.0
            return [100.0 - share, share]
        return [arm.weight for arm in self.arms]

    def bandit(self) -> Bandit:
        if self.epsilon is None:
            bandit = Bandit(self.arm_names)
        else:
            bandit = Bandit(self.arm_names, policy="epsilon-greedy", epsilon=self.epsilon)
        if self.successes:
            bandit.set_counts(self.successes, self.failures)
        return bandit

    def phase_started_at(self) -> datetime | None:
        """When the current split began: a canary's last step (None: the whole test)."""
        if self.kind != "canary":
            return None
        moves = [h["at"] for h in self.history if h["what"] in ("started", "step")]
        return datetime.fromisoformat(moves[-1]) if moves else None

    def decided(self, what: str, **details: object) -> None:
        self.history.append({"at": datetime.now(UTC).isoformat(), "what": what, **details})


@dataclass(frozen=True)
class Assignment:
    experiment: str
    arm: str
    version: str
    propensity: float


def parse(text: str | bytes | dict, *, source: str = "experiment") -> Experiment:
    """An experiment from JSON (or a dict), with errors that name the field."""
    try:
        if isinstance(text, dict):
            return Experiment.model_validate(text)
        return Experiment.model_validate_json(text)
    except ValidationError as exc:
        lines = [
            f"{source}: {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        ]
        raise ValueError("\n".join(lines)) from None


def load_all(store: Store) -> list[Experiment]:
    stored = store.experiments()
    return [parse(spec, source=f"stored experiment {name}") for name, spec, _ in stored]


def get(store: Store, name: str) -> Experiment:
    if not ALIAS.match(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ValueError(
            f"experiment name {shown!r}: lower-case letters, digits, '-' or '_', starting with "
            "a letter, at most 32 characters (see `tailor experiments list`)"
        )
    for experiment in load_all(store):
        if experiment.name == name:
            return experiment
    raise ValueError(f"no experiment {name!r} (see `tailor experiments list`)")


def save(store: Store, experiment: Experiment) -> None:
    store.put_experiment(experiment.name, experiment.model_dump_json(), datetime.now(UTC))


def start(store: Store, experiment: Experiment) -> Experiment:
    """Store a new experiment after checking its versions exist and that no other running
    experiment routes the same engine's traffic."""
    from tailor.lifecycle import registry

    if experiment.engine not in ENGINES:
        raise ValueError(f"unknown engine {experiment.engine!r}")
    for arm in experiment.arms:
        registry.get(store, experiment.engine, arm.version)
    existing = {e.name: e for e in load_all(store)}
    if experiment.name in existing:
        raise ValueError(
            f"experiment {experiment.name!r} exists already: choose another name "
            "(a stopped experiment keeps its results)"
        )
    clash = [e.name for e in existing.values() if e.running and e.engine == experiment.engine]
    if clash:
        raise ValueError(
            f"experiment {clash[0]!r} already routes {experiment.engine} traffic: stop it first "
            f"(`tailor experiments stop {clash[0]}`)"
        )
    experiment = experiment.model_copy(update={"salt": experiment.salt or experiment.name})
    experiment.decided("started", weights=experiment.weights())
    save(store, experiment)
    return experiment


def stop(store: Store, name: str, *, status: Status = "stopped", reason: str = "") -> Experiment:
    experiment = get(store, name)
    if not experiment.running:
        raise ValueError(f"experiment {name!r} is {experiment.status} already")
    experiment.status = status
    experiment.ended_at = datetime.now(UTC)
    experiment.decided(status, reason=reason)
    save(store, experiment)
    return experiment


class Router:
    """Which arm answers a subject, for the running experiments of one engine; immutable, so
    a serving worker swaps a new one in when the stored experiments change."""

    def __init__(self, experiments: list[Experiment], engine: str = "recommend") -> None:
        running = [e for e in experiments if e.running and e.engine == engine]
        self.experiment = running[0] if running else None
        self._weights = np.asarray(self.experiment.weights()) if self.experiment else None
        bandit = self.experiment is not None and self.experiment.kind == "bandit"
        self._bandit = self.experiment.bandit() if bandit else None
        if self._bandit is not None:
            self._bandit.probabilities()  # estimated once here, not in the first request

    @property
    def versions(self) -> list[str]:
        return [arm.version for arm in self.experiment.arms] if self.experiment else []

    def route(self, subject: str, rng: np.random.Generator) -> Assignment | None:
        experiment = self.experiment
        if experiment is None:
            return None
        if self._bandit is not None:
            name, propensity = self._bandit.choose(rng)
            index = experiment.arm_names.index(name)
        else:
            weights = self._weights
            index = assign(subject, experiment.salt or experiment.name, weights.tolist())
            propensity = float(weights[index] / weights.sum())
        arm = experiment.arms[index]
        return Assignment(experiment.name, arm.name, arm.version, propensity)
