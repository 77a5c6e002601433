"""BanditModel JSON: the bandit-models-v1 format, flag links, and Eppo's SDK reading it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sortition.learning import (
    BanditModel,
    bandit_flags_json,
    bandit_models_json,
    link_bandit,
    load_bandit_models,
    train_bandit,
)
from sortition.serving.bandits import evaluate_bandit, parse_bandit_model

UFC = Path(__file__).resolve().parents[1] / "conformance" / "eppo" / "ufc"


def test_eppo_model_file_round_trips_exactly():
    raw = json.loads((UFC / "bandit-models-v1.json").read_text())
    models = load_bandit_models(raw)
    out = bandit_models_json(models.values(), environment="Test", updated_at=raw["updatedAt"])
    assert out["bandits"] == raw["bandits"]
    assert models["car_bandit"].default_action_score == 5.0
    assert models["car_bandit"].action_probability_floor == 0.2


def test_trained_model_json_is_what_serving_parses(env):
    ev, _, _ = env.log_events(600, seed=1)
    model = train_bandit(ev, bandit_key="shoes", gamma=2.0, action_probability_floor=0.1)
    entry = json.loads(json.dumps(model.to_json()))  # through real JSON text
    assert set(entry) == {"banditKey", "modelName", "updatedAt", "modelVersion", "modelData"}
    assert set(entry["modelData"]) == {
        "gamma",
        "defaultActionScore",
        "actionProbabilityFloor",
        "coefficients",
    }
    parsed = parse_bandit_model(entry)
    assert parsed == model.serving_model()
    assert BanditModel.from_json(entry).model_data() == model.model_data()


def test_link_bandit_writes_references_for_every_allocation_routing_to_the_bandit():
    flags = json.loads((UFC / "bandit-flags-v1.json").read_text())
    flags.pop("banditReferences")
    flags.pop("bandits")
    model = load_bandit_models(json.loads((UFC / "bandit-models-v1.json").read_text()))["banner_bandit"]
    linked = link_bandit(flags, model, ["banner_bandit_flag"])
    ref = linked["banditReferences"]["banner_bandit"]
    assert ref["modelVersion"] == "123"
    assert {(v["flagKey"], v["allocationKey"]) for v in ref["flagVariations"]} == {
        ("banner_bandit_flag", "analysis"),
        ("banner_bandit_flag", "training"),
    }
    assert linked["bandits"]["banner_bandit"] == [
        {
            "key": "banner_bandit",
            "flagKey": "banner_bandit_flag",
            "variationKey": "banner_bandit",
            "variationValue": "banner_bandit",
        }
    ]
    assert "banditReferences" not in flags  # the input is not modified
    with pytest.raises(ValueError, match="no variation with value"):
        link_bandit(flags, model, ["non_bandit_flag"])
    with pytest.raises(ValueError, match="not in the flags file"):
        link_bandit(flags, model, ["nope"])


def test_bad_model_json_names_the_field():
    with pytest.raises(ValueError, match="gamma"):
        BanditModel.from_json({"banditKey": "b", "modelData": {"gamma": "x", "coefficients": {}}})
    with pytest.raises(ValueError, match="modelData"):
        BanditModel.from_json({"banditKey": "b"})
    with pytest.raises(ValueError, match=r"^bandits\.b\.modelData\.gamma: expected a finite number"):
        load_bandit_models({"bandits": {"b": {"modelData": {"gamma": "x"}}}})
    with pytest.raises(ValueError, match=r"^bandits\.bandits: expected an object, got \[\]"):
        load_bandit_models({"bandits": []})
    with pytest.raises(ValueError, match="^it has no 'bandits' object"):
        load_bandit_models({"bandit": {}})
    with pytest.raises(ValueError, match="share banditKey"):
        m = BanditModel("b", 1.0, 0.0, 0.0, {})
        bandit_models_json([m, m])


def test_eppo_sdk_serves_the_trained_model_with_identical_actions(env):
    eppo = pytest.importorskip("eppo_client")
    ev, _, _ = env.log_events(1500, seed=2)
    model = train_bandit(ev, bandit_key="shoes", gamma=5.0, action_probability_floor=0.1)
    flags, bandits = bandit_flags_json(model, "shoe-flag"), bandit_models_json([model])
    config = eppo.Configuration(
        flags_configuration=json.dumps(flags).encode(), bandits_configuration=json.dumps(bandits).encode()
    )
    events = []

    class Log(eppo.AssignmentLogger):
        def log_assignment(self, event):
            pass

        def log_bandit_action(self, event):
            events.append(event)

    client = eppo.init(
        eppo.ClientConfig(
            api_key="offline",
            assignment_logger=Log(),
            initial_configuration=config,
            poll_interval_seconds=None,
        )
    )
    ctx = env.sample_contexts(150, np.random.default_rng(3), prefix="eppo-")
    offered = env.offered()
    eppo_actions = {
        k: eppo.ContextAttributes(
            numeric_attributes=a["numericAttributes"], categorical_attributes=a["categoricalAttributes"]
        )
        for k, a in env.actions.items()
    }
    chosen = set()
    for i in range(ctx.n):
        subject = eppo.ContextAttributes(
            numeric_attributes=ctx.numeric[i], categorical_attributes=ctx.categorical[i]
        )
        theirs = client.get_bandit_action("shoe-flag", ctx.subject[i], subject, eppo_actions, "none")
        ours = evaluate_bandit("shoe-flag", ctx.subject[i], ctx.attributes(i), offered, model.serving_model())
        assert theirs.action == ours.action_key, ctx.subject[i]
        assert events[-1]["actionProbability"] == pytest.approx(ours.action_weight, abs=1e-12)
        chosen.add(ours.action_key)
    assert len(chosen) > 1  # the comparison exercised more than one action
