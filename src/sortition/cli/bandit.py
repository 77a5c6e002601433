"""``sortition bandit ...``: contextual bandits that learn from their own logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import typer
from rich.table import Table

from sortition.cli.app import Group, SortitionTyper, app
from sortition.cli.console import console, fail, read_json
from sortition.cli.options import WINDOW_HELP, parse_window

bandit_app = SortitionTyper(
    cls=Group,
    help="Contextual bandits: simulate the serve -> log -> retrain loop.", no_args_is_help=True
)
app.add_typer(bandit_app, name="bandit")


@bandit_app.command("simulate")
def simulate(
    rounds: int = typer.Option(8, min=1, help="Rounds of serving and retraining."),
    subjects: int = typer.Option(500, min=1, help="Subjects arriving per round."),
    actions: int = typer.Option(4, min=2, help="Number of actions."),
    seed: int = typer.Option(0, min=0, help="Seed of the environment and the arrivals."),
    reward: Literal["continuous", "binary"] = typer.Option(
        "continuous", help="continuous (Gaussian noise) or binary rewards."
    ),
    gamma_scale: float = typer.Option(1.0, min=0.0, help="gamma = scale * sqrt(events trained on)."),
    floor: float = typer.Option(0.05, min=0.0, max=1.0, help="actionProbabilityFloor of the trained models."),
    store: str = typer.Option(
        ":memory:", help="EventStore path (DuckDB file) or postgresql:// URL; it must hold no events yet."),
    save_model: Path | None = typer.Option(None, help="Write the final bandit-models-v1 JSON here."),
) -> None:
    """Simulate a contextual bandit with a known reward function, from a cold start.

    Each round the current model is served by Sortition's client, events and rewards go to the
    event store, and the model is retrained from the store. Prints per-round reward and regret
    beside a uniform policy and the oracle (expected rewards, noise-free, per subject).
    """
    from sortition.data.files import require_output_file
    from sortition.learning.environment import make_environment
    from sortition.learning.model import bandit_models_json
    from sortition.learning.simulate import simulate_bandit
    from sortition.learning.training import SqrtGamma
    from sortition.store import EventStore

    if save_model is not None:
        require_output_file(save_model, "--save-model")
    env = make_environment(n_actions=actions, seed=seed, reward=reward)  # type: ignore[arg-type]
    table = Table(title=f"bandit simulation: {actions} actions, {subjects} subjects/round, seed {seed}")
    for col in ("round", "trained on", "gamma", "reward", "expected", "uniform", "oracle", "regret"):
        table.add_column(col, justify="right")
    with EventStore(store) as event_store, console.status("simulating...") as status:

        def row(r) -> None:
            status.update(f"round {r.round + 1}/{rounds}: expected reward {r.expected_reward:.3f}")
            table.add_row(
                str(r.round),
                str(r.n_trained),
                f"{r.gamma:.1f}",
                f"{r.reward:.3f}",
                f"{r.expected_reward:.3f}",
                f"{r.uniform_reward:.3f}",
                f"{r.oracle_reward:.3f}",
                f"{r.regret:.3f}",
            )

        result = simulate_bandit(
            env,
            rounds=rounds,
            subjects_per_round=subjects,
            seed=seed,
            gamma=SqrtGamma(gamma_scale),
            action_probability_floor=floor,
            store=event_store,
            on_round=row,
        )
    console.print(table)
    last = result.rounds[-1]
    console.print(
        f"cumulative regret {result.cumulative_regret:.1f} over {rounds * subjects} subjects; last round "
        f"earns {last.expected_reward - last.uniform_reward:+.3f} per subject over uniform, "
        f"{last.regret:.3f} below the oracle"
    )
    if save_model is not None:
        save_model.write_text(json.dumps(bandit_models_json([result.final_model]), indent=2))
        console.print(f"final model written to {save_model}")


@bandit_app.command("train")
def train(
    store: str = typer.Argument(..., help="EventStore path (DuckDB file) or postgresql:// URL."),
    metric: str = typer.Option(..., help="Outcome metric whose attributed value is the reward."),
    out: Path = typer.Option(..., help="Write the bandit-models-v1 JSON here."),
    flag: str | None = typer.Option(None, help="Only decisions served by this flag."),
    bandit_key: str = typer.Option("bandit", help="banditKey of the trained model."),
    gamma: float | None = typer.Option(None, min=0.0, help="Fixed gamma (default: the sqrt schedule)."),
    gamma_scale: float = typer.Option(
        1.0, min=0.0, help="gamma = scale * sqrt(events) when --gamma is unset."
    ),
    floor: float = typer.Option(0.05, min=0.0, max=1.0, help="actionProbabilityFloor."),
    l2: float = typer.Option(1.0, min=0.0, help="Ridge penalty on standardized attributes."),
    window: str | None = typer.Option(None, help=WINDOW_HELP),
    until: str | None = typer.Option(
        None, help="Only decisions before this time (RFC 3339): hold the later ones out for "
        "'bandit evaluate --since' with the same time."),
    flags: Path | None = typer.Option(
        None, help="A flags (UFC) file to link to the model (needs --out-flags)."
    ),
    out_flags: Path | None = typer.Option(None, help="Write the flags file with banditReferences here."),
) -> None:
    """Train a bandit model from the store's logged decisions and their rewards, and publish it.

    The ridge's sufficient statistics are computed in the store (SQL on DuckDB or PostgreSQL): the
    events are never loaded into Python, so months of logs train in bounded memory.
    """
    from sortition.data.files import require_output_file
    from sortition.learning import SqrtGamma, bandit_models_json, link_bandit
    from sortition.learning.sufficient import NoDecisionsError, model_from_statistics, store_statistics

    if (flags is None) != (out_flags is None):
        raise typer.BadParameter("give --flags and --out-flags together", param_hint="--flags")
    require_output_file(out, "--out")
    if out_flags is not None:
        require_output_file(out_flags, "--out-flags")
    # Checked before training, so that a bad flags file is refused before anything is written.
    flags_document = None if flags is None else _flags_document(flags)
    seconds = parse_window(window)
    until_utc = _utc_option(until, "--until")
    with _read_store(store, metric, flag) as event_store, \
            console.status("computing sufficient statistics in the store..."):
        try:
            stats = store_statistics(event_store, metric, flag_key=flag, window=seconds, until=until_utc)
        except NoDecisionsError:
            fail(f"no bandit decisions in {store}" + (f" for flag {flag!r}" if flag else "")
                 + (f" before {until}" if until else ""))
    model = model_from_statistics(
        stats,
        bandit_key=bandit_key,
        gamma=SqrtGamma(gamma_scale) if gamma is None else gamma,
        action_probability_floor=floor,
        l2=l2,
    )
    linked = None
    if flags_document is not None:
        try:
            linked = link_bandit(flags_document, model)
        except ValueError as exc:
            fail(f"cannot link flags file '{flags}' to bandit {bandit_key!r} (--bandit-key): {exc}")
    out.write_text(json.dumps(bandit_models_json([model]), indent=2))
    table = Table(title=f"bandit {bandit_key!r}: {model.n_events} events, gamma {model.gamma:.2f}")
    for col in ("action", "events", "intercept"):
        table.add_column(col, justify="right")
    for key, c in model.coefficients.items():
        table.add_row(key, str(stats.events.get(key, 0)), f"{c.intercept:.4f}")
    console.print(table)
    console.print(f"model written to {out}")
    if linked is not None and out_flags is not None:
        out_flags.write_text(json.dumps(linked, indent=2))
        console.print(f"flags with banditReferences written to {out_flags}")


def _utc_option(text: str | None, option: str) -> Any:
    """An RFC 3339 option as a UTC time (None when not given), or exit 2 saying what is wrong with it."""
    from sortition.store.records import FieldError, to_utc

    if text is None:
        return None
    try:
        return to_utc(text, option)
    except FieldError as err:
        fail(f"{option} {err.problem}")
    raise AssertionError("unreachable")


def _flags_document(path: Path) -> dict:
    """The flags (UFC) file at ``path``, or exit 2 naming it and its bad field."""
    from sortition.serving import Configuration

    document = read_json(path, "flags file")
    try:
        Configuration.from_json(document)
    except (ValueError, TypeError) as exc:
        fail(f"flags file '{path}' is not a flags configuration: {exc}")
    return document


_ESTIMATORS = ("ips", "snips", "dm", "dr")


@contextmanager
def _read_store(store: str, metric: str, flag: str | None) -> Iterator[Any]:
    """``store`` opened read-only, after refusing a store that does not exist, a metric with no
    outcome events and a flag with no bandit decisions."""
    from sortition.store import EventStore
    from sortition.workflows.guards import require_flag, require_metric

    if not store.startswith(("postgresql://", "postgres://")):
        from sortition.data.files import require_file

        require_file(store, "event store")
    with EventStore(store, read_only=True) as event_store:
        require_metric(event_store, metric)
        if flag is not None:
            require_flag(event_store, flag, bandit=True)
        yield event_store


def _rewards(store: str, metric: str, flag: str | None, window: float | None) -> Any:
    """Bandit decisions joined to ``metric`` from ``store`` (see :func:`_read_store`)."""
    with _read_store(store, metric, flag) as event_store:
        return event_store.bandit_rewards(metric, flag_key=flag, window=window)


@bandit_app.command("evaluate")
def evaluate(
    store: str = typer.Argument(..., help="EventStore path (DuckDB file) or postgresql:// URL."),
    metric: str = typer.Option(..., help="Outcome metric whose attributed value is the reward."),
    model: Path | None = typer.Option(None, help="Candidate: a bandit-models-v1 JSON file."),
    bandit: str | None = typer.Option(None, help="Which bandit of --model (needed when it has several)."),
    flags: Path | None = typer.Option(
        None, help="Candidate: a flags (UFC) JSON file whose variations are actions."
    ),
    candidate_flag: str | None = typer.Option(None, help="The candidate flag's key in --flags."),
    estimator: Literal["dr", "ips", "snips", "dm", "all"] = typer.Option("dr", help="The estimator, or all."),
    interval: Literal["normal", "bootstrap"] = typer.Option(
        "normal", help="normal (delta method) or bootstrap."
    ),
    alpha: float = typer.Option(0.05, min=1e-6, max=0.5, help="1 - the intervals' nominal coverage."),
    flag: str | None = typer.Option(None, help="Only decisions logged by this flag."),
    since: str | None = typer.Option(None, help="Only decisions at or after this time (RFC 3339)."),
    window: str | None = typer.Option(None, help=WINDOW_HELP),
    seed: int = typer.Option(0, min=0, help="Seed of the reward model's folds and the bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Print the estimates as JSON."),
) -> None:
    """Estimate off-line what a candidate bandit model or flag would earn per decision.

    Reads the store's logged decisions and rewards, and evaluates the candidate against the
    logging policy with importance weighting (IPS, SNIPS), a reward model (DM) or both (DR).
    A model candidate needs the actions offered at each decision (logged by Sortition's client).
    """
    import warnings

    import numpy as np

    from sortition.learning import load_bandit_models
    from sortition.learning.ope import DM, DR, IPS, SNIPS, IntervalSettings, OffPolicyData, OverlapWarning
    from sortition.learning.ope import candidate_data, flag_plan_data

    if (model is None) == (flags is None):
        fail("give one candidate: --model MODELS_JSON (a bandit model) or --flags FLAGS_JSON "
              "--candidate-flag KEY")
    if flags is not None and candidate_flag is None:
        fail("--flags needs --candidate-flag KEY: the candidate flag's key in the flags file")
    if model is not None and candidate_flag is not None:
        fail("--candidate-flag goes with --flags; with --model choose the bandit with --bandit")
    seconds = parse_window(window)
    try:
        settings = IntervalSettings(interval=interval, alpha=alpha, seed=seed)
    except ValueError as err:
        fail(f"--interval/--alpha: {err}")
    since_utc = _utc_option(since, "--since")

    frame = _rewards(store, metric, flag, seconds)
    if since_utc is not None:
        frame = frame[frame["timestamp"] >= since_utc].reset_index(drop=True)
    where = f"{store}" + (f" for flag {flag!r}" if flag else "")
    where += f" since {since}" if since else ""
    if frame.empty:
        fail(f"no bandit decisions in {where}; check the store, --flag and --since")

    if model is not None:
        try:
            models = load_bandit_models(read_json(model, "models file"))
        except (ValueError, KeyError, TypeError) as err:
            fail(f"{model} is not a bandit-models-v1 file: {err}")
        if bandit is None and len(models) != 1:
            fail(f"{model} has {len(models)} bandits {sorted(models)[:10]}; "
                  "choose one with --bandit")
        key = bandit if bandit is not None else next(iter(models))
        if key not in models:
            fail(f"bandit {key!r} is not in {model}; it has {sorted(models)[:10]}")
        lacking = frame["offered_actions"].isna()
        if lacking.any():
            stamps = frame.loc[lacking, "timestamp"]
            fail(
                f"{int(lacking.sum())} of {len(frame)} decisions in {where} were logged without their "
                f"offered actions (logged {stamps.min()} to {stamps.max()} UTC), so a model's probability "
                "of the logged action cannot be computed for them. Log with Sortition's Client (it records them, "
                "unless log_offered_actions=False), then evaluate only decisions that have them with "
                f"--since {(stamps.max() + np.timedelta64(1, 'us')).isoformat()}Z",
            )
        candidate_name = f"model {key!r} ({models[key].model_version})"
        try:
            data = candidate_data(frame, models[key], seed=seed)
        except ValueError as err:
            fail(str(err))
    else:
        assert flags is not None and candidate_flag is not None
        flags_doc = read_json(flags, "the flags file")
        variations = (flags_doc.get("flags", {}).get(candidate_flag) or {}).get("variations", {})
        # the logged action is the served variation's value; the plan is over variation keys
        key_of = {str(v.get("value")): k for k, v in variations.items() if isinstance(v, dict)}
        candidate_name = f"flag {candidate_flag!r}"
        try:
            data = flag_plan_data(
                frame["reward"].to_numpy(),
                frame["action_probability"].to_numpy(),
                [key_of.get(a, a) for a in frame["action"]],
                [{**n, **c} for n, c in zip(frame["subject_numeric_attributes"],
                                             frame["subject_categorical_attributes"], strict=True)],
                flags_doc,
                candidate_flag,
                subject_keys=frame["subject"].astype(str).tolist(),
            )
        except ValueError as err:
            fail(str(err))

    classes = {"ips": IPS, "snips": SNIPS, "dm": DM, "dr": DR}
    chosen = _ESTIMATORS if estimator == "all" else (estimator,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OverlapWarning)  # shown below, once each
        estimates = [classes[name](settings).estimate(data) for name in chosen]
        logging_value = IPS(settings).estimate(
            OffPolicyData(data.reward, data.logging_probability, data.logging_probability)
        )
    if as_json:
        from dataclasses import asdict

        from sortition.cli.jsonout import print_json

        print_json({
            "candidate": candidate_name, "decisions": int(data.n), "store": str(store), "logged_flag": flag,
            "since": since, "metric": metric, "estimates": [asdict(est) for est in estimates],
            "logging": {**asdict(logging_value), "estimator": "mean reward"},
        })
        return
    table = Table(title=f"candidate {candidate_name} vs the logging policy\n{data.n} decisions in {where}, "
                        f"reward = {metric!r}; {1 - alpha:.0%} {interval} intervals")
    for col in ("policy", "estimator", "value", "interval", "std error", "ESS"):
        table.add_column(col, justify="right", no_wrap=True)
    for est in estimates:
        table.add_row("candidate", est.estimator, f"{est.value:.4f}", f"[{est.lower:.4f}, {est.upper:.4f}]",
                      f"{est.std_error:.4f}", f"{est.effective_sample_size:.1f}")
    table.add_row("logging", "mean reward", f"{logging_value.value:.4f}",
                  f"[{logging_value.lower:.4f}, {logging_value.upper:.4f}]", f"{logging_value.std_error:.4f}",
                  f"{data.n}")
    console.print(table)
    for note in dict.fromkeys(n for est in estimates for n in est.warnings):
        console.print(f"[yellow]overlap warning:[/yellow] {note}")
