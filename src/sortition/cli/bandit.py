"""``sortition bandit ...``: contextual bandits that learn from their own logs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from sortition.cli.app import app

bandit_app = typer.Typer(
    help="Contextual bandits: simulate the serve -> log -> retrain loop.", no_args_is_help=True
)
app.add_typer(bandit_app, name="bandit")


@bandit_app.command("simulate")
def simulate(
    rounds: int = typer.Option(8, min=1, help="Rounds of serving and retraining."),
    subjects: int = typer.Option(500, min=1, help="Subjects arriving per round."),
    actions: int = typer.Option(4, min=2, help="Number of actions."),
    seed: int = typer.Option(0, help="Seed of the environment and the arrivals."),
    reward: str = typer.Option("continuous", help="'continuous' (Gaussian noise) or 'binary'."),
    gamma_scale: float = typer.Option(1.0, min=0.0, help="gamma = scale * sqrt(events trained on)."),
    floor: float = typer.Option(0.05, min=0.0, max=1.0, help="actionProbabilityFloor of the trained models."),
    store: str = typer.Option(":memory:", help="EventStore path (DuckDB file) or postgresql:// URL."),
    save_model: Path | None = typer.Option(None, help="Write the final bandit-models-v1 JSON here."),
) -> None:
    """Simulate a contextual bandit with a known reward function, from a cold start.

    Each round the current model is served by Sortition's client, events and rewards go to the
    event store, and the model is retrained from the store. Prints per-round reward and regret
    beside a uniform policy and the oracle (expected rewards, noise-free, per subject).
    """
    from sortition.learning.environment import make_environment
    from sortition.learning.model import bandit_models_json
    from sortition.learning.simulate import simulate_bandit
    from sortition.learning.training import SqrtGamma
    from sortition.store import EventStore

    if reward not in ("continuous", "binary"):
        raise typer.BadParameter(f"reward is {reward!r}; use 'continuous' or 'binary'", param_hint="--reward")
    console = Console()
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
    flag_key: str | None = typer.Option(None, help="Only decisions served by this flag."),
    bandit_key: str = typer.Option("bandit", help="banditKey of the trained model."),
    gamma: float | None = typer.Option(None, min=0.0, help="Fixed gamma (default: the sqrt schedule)."),
    gamma_scale: float = typer.Option(
        1.0, min=0.0, help="gamma = scale * sqrt(events) when --gamma is unset."
    ),
    floor: float = typer.Option(0.05, min=0.0, max=1.0, help="actionProbabilityFloor."),
    l2: float = typer.Option(1.0, min=0.0, help="Ridge penalty on standardized attributes."),
    window: float | None = typer.Option(None, min=0.0, help="Attribution window in seconds (default: none)."),
    flags: Path | None = typer.Option(
        None, help="A flags (UFC) file to link to the model (needs --out-flags)."
    ),
    out_flags: Path | None = typer.Option(None, help="Write the flags file with banditReferences here."),
) -> None:
    """Train a bandit model from the store's logged decisions and their rewards, and publish it."""
    from sortition.learning import SqrtGamma, bandit_models_json, link_bandit, train_bandit
    from sortition.learning.events import BanditEvents
    from sortition.store import EventStore

    if (flags is None) != (out_flags is None):
        raise typer.BadParameter("give --flags and --out-flags together", param_hint="--flags")
    console = Console()
    with EventStore(store) as event_store:
        frame = event_store.bandit_rewards(metric, flag_key=flag_key, window=window)
    if frame.empty:
        raise typer.BadParameter(
            f"no bandit decisions in {store}" + (f" for flag {flag_key!r}" if flag_key else ""),
            param_hint="store",
        )
    model = train_bandit(
        BanditEvents.from_frame(frame),
        bandit_key=bandit_key,
        gamma=SqrtGamma(gamma_scale) if gamma is None else gamma,
        action_probability_floor=floor,
        l2=l2,
    )
    out.write_text(json.dumps(bandit_models_json([model]), indent=2))
    table = Table(title=f"bandit {bandit_key!r}: {model.n_events} events, gamma {model.gamma:.2f}")
    for col in ("action", "events", "intercept"):
        table.add_column(col, justify="right")
    counts = frame["action"].value_counts()
    for key, c in model.coefficients.items():
        table.add_row(key, str(int(counts.get(key, 0))), f"{c.intercept:.4f}")
    console.print(table)
    console.print(f"model written to {out}")
    if flags is not None and out_flags is not None:
        linked = link_bandit(json.loads(flags.read_text()), model)
        out_flags.write_text(json.dumps(linked, indent=2))
        console.print(f"flags with banditReferences written to {out_flags}")
