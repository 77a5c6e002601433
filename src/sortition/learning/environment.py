"""A synthetic contextual-bandit environment whose expected reward is known exactly.

The truth is itself a model in the bandit format (scored by the serving evaluator), so tests can
check that training recovers it coefficient by coefficient, and simulations can compute the
oracle's and the uniform policy's expected reward for the very subjects that arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from sortition.learning.events import BanditEvents
from sortition.learning.model import BanditModel
from sortition.serving.attributes import Attributes
from sortition.serving.bandits import ActionCoefficients, action_weights, score_actions

COUNTRIES = ("US", "UK", "DE")
DEVICES = ("mobile", "desktop")


@dataclass(frozen=True, eq=False)
class Contexts:
    """n arriving subjects: their keys and attribute groups (length-n tuples)."""

    subject: tuple[str, ...]
    numeric: tuple[dict[str, Any], ...]
    categorical: tuple[dict[str, Any], ...]

    @property
    def n(self) -> int:
        return len(self.subject)

    def attributes(self, i: int) -> Attributes:
        return Attributes(self.numeric[i], self.categorical[i])


@dataclass(frozen=True, eq=False)
class SyntheticEnvironment:
    """Subjects with numeric ``age``, ``visits`` and categorical ``country``, ``device`` (each
    sometimes missing); actions with fixed attributes; reward = truth's score + noise.

    Attributes:
        truth: the true model; its score of an action is the expected reward (clipped to [0, 1]
            for binary rewards).
        actions: action key -> {"numericAttributes": ..., "categoricalAttributes": ...}.
        reward: "continuous" (Gaussian noise with sd ``noise_sd``) or "binary" (Bernoulli).
        missing_rate: probability that each subject attribute is absent.
    """

    truth: BanditModel
    actions: dict[str, dict[str, dict[str, Any]]]
    reward: Literal["continuous", "binary"] = "continuous"
    noise_sd: float = 1.0
    missing_rate: float = 0.1

    @property
    def action_keys(self) -> tuple[str, ...]:
        return tuple(self.actions)

    def offered(self) -> dict[str, Attributes]:
        """The offered actions as evaluator attributes."""
        return {
            k: Attributes(dict(a.get("numericAttributes", {})), dict(a.get("categoricalAttributes", {})))
            for k, a in self.actions.items()
        }

    def sample_contexts(self, n: int, rng: np.random.Generator, prefix: str = "s") -> Contexts:
        """n subjects with keys ``f"{prefix}{i}"``."""
        age = rng.normal(40, 12, n).round(0)
        visits = rng.poisson(3, n).astype(float)
        country = rng.choice(len(COUNTRIES), n, p=[0.5, 0.3, 0.2])
        device = rng.choice(len(DEVICES), n, p=[0.6, 0.4])
        miss = rng.random((n, 4)) < self.missing_rate
        numeric, categorical = [], []
        for i in range(n):
            num: dict[str, Any] = {}
            cat: dict[str, Any] = {}
            if not miss[i, 0]:
                num["age"] = float(age[i])
            if not miss[i, 1]:
                num["visits"] = float(visits[i])
            if not miss[i, 2]:
                cat["country"] = COUNTRIES[country[i]]
            if not miss[i, 3]:
                cat["device"] = DEVICES[device[i]]
            numeric.append(num)
            categorical.append(cat)
        return Contexts(tuple(f"{prefix}{i}" for i in range(n)), tuple(numeric), tuple(categorical))

    def expected_rewards(self, contexts: Contexts) -> np.ndarray:
        """(n, K) expected reward of every action for every subject, actions in ``action_keys`` order."""
        model = self.truth.serving_model()
        offered = self.offered()
        out = np.empty((contexts.n, len(offered)))
        for i in range(contexts.n):
            s = score_actions(model, contexts.attributes(i), offered)
            out[i] = [s[k] for k in offered]
        return np.clip(out, 0.0, 1.0) if self.reward == "binary" else out

    def draw_rewards(self, expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Rewards with the given expectations (any shape)."""
        if self.reward == "binary":
            return (rng.random(expected.shape) < expected).astype(float)
        return expected + rng.normal(0.0, self.noise_sd, expected.shape)

    def log_events(
        self, n: int, seed: int, logging_model: BanditModel | None = None
    ) -> tuple[BanditEvents, Contexts, np.ndarray]:
        """n events logged by ``logging_model``'s policy (uniform when None), actions drawn at
        random from its probabilities. Returns (events with offered sets, contexts, (n, K)
        expected rewards)."""
        rng = np.random.default_rng(seed)
        ctx = self.sample_contexts(n, rng, prefix=f"log{seed}-")
        q = self.expected_rewards(ctx)
        keys = self.action_keys
        k = len(keys)
        if logging_model is None:
            probs = np.full((n, k), 1.0 / k)
        else:
            probs = policy_probabilities(logging_model, ctx, self.offered())
        u = rng.random(n)[:, None]
        a = np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), k - 1)
        r = self.draw_rewards(q[np.arange(n), a], rng)
        events = BanditEvents(
            action=np.array([keys[i] for i in a], dtype=object),
            reward=r,
            action_probability=probs[np.arange(n), a],
            subject_numeric=ctx.numeric,
            subject_categorical=ctx.categorical,
            action_numeric=tuple(self.actions[keys[i]].get("numericAttributes", {}) for i in a),
            action_categorical=tuple(self.actions[keys[i]].get("categoricalAttributes", {}) for i in a),
            subject=np.array(ctx.subject, dtype=object),
            offered=tuple(self.actions for _ in range(n)),
        )
        return events, ctx, q


def policy_probabilities(
    model: BanditModel, contexts: Contexts, offered: dict[str, Attributes]
) -> np.ndarray:
    """(n, K) the probabilities a model's policy gives each offered action (keys in ``offered``
    order), computed by the serving evaluator's scorer and inverse-gap weighting."""
    m = model.serving_model()
    keys = list(offered)
    out = np.empty((contexts.n, len(keys)))
    for i in range(contexts.n):
        w = action_weights(
            score_actions(m, contexts.attributes(i), offered), m.gamma, m.action_probability_floor
        )
        out[i] = [w[k] for k in keys]
    return out


def make_environment(
    n_actions: int = 4,
    seed: int = 0,
    reward: Literal["continuous", "binary"] = "continuous",
    noise_sd: float = 1.0,
    missing_rate: float = 0.1,
) -> SyntheticEnvironment:
    """A random environment: every action has its own intercept, age/visits slopes, missing-value
    effects and country/device effects (scaled so binary rewards stay inside [0, 1] mostly)."""
    if n_actions < 2:
        raise ValueError(f"n_actions is {n_actions}; a bandit needs at least 2 actions")
    rng = np.random.default_rng(seed)
    scale = 0.05 if reward == "binary" else 0.5
    base = 0.3 if reward == "binary" else 0.0
    coefficients = {}
    actions = {}
    for a in range(n_actions):
        key = f"action_{a}"
        r = lambda: float(np.round(rng.normal(0, scale), 4))  # noqa: E731
        age, visits = r() / 12, r() / 2
        coefficients[key] = ActionCoefficients(
            action_key=key,
            # centred: the slopes act around the typical subject (age 40, 3 visits)
            intercept=round(base + r() - 40 * age - 3 * visits, 6),
            subject_numeric=(("age", age, r()), ("visits", visits, r())),
            subject_categorical=(
                ("country", MappingProxyType({c: r() for c in COUNTRIES}), r()),
                ("device", MappingProxyType({d: r() for d in DEVICES}), r()),
            ),
        )
        actions[key] = {
            "numericAttributes": {"price": float(10 + 5 * a)},
            "categoricalAttributes": {"color": ("red", "blue", "green")[a % 3]},
        }
    truth = BanditModel(
        bandit_key="truth",
        gamma=0.0,
        default_action_score=0.0,
        action_probability_floor=0.0,
        coefficients=coefficients,
    )
    return SyntheticEnvironment(truth, actions, reward, noise_sd, missing_rate)
