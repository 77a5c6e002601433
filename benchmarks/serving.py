"""Request-time serving: Sortition vs Eppo's own Python SDK (eppo-server-sdk, Rust core).

Same configuration (the bundled Eppo test flags and bandit models), same subjects, same
process. Eppo runs offline (``initial_configuration``, ``poll_interval_seconds=None``).
Prints microseconds per call, median of several runs, and the ratio. Both clients get a
no-op logger. Cold by default, the path users take: every run uses fresh clients and subject keys
never seen before, so every event is built and no dedup cache is hit (``--warm`` repeats the same
subjects on the same clients). Times are CPU time of this process (``time.process_time``, every
thread included, so Eppo's Rust threads count too): on a shared machine wall time measures the
other processes' load as much as the call. Batch: Sortition's batch call per subject vs Eppo's
per-call loop (Eppo has no batch call).

    python benchmarks/serving.py [--subjects 2000] [--repeats 7] [--warm]
"""

from __future__ import annotations

import argparse
import gc
import logging
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sortition.serving import Client, Configuration  # noqa: E402

UFC = ROOT / "tests" / "conformance" / "eppo" / "ufc"
FLAG = "new-user-onboarding"
BANDIT_FLAG = "banner_bandit_flag"
ACTIONS = {
    "nike": {"brand_affinity": 1.2, "loyalty_tier": "gold", "zip": "22203"},
    "adidas": {"brand_affinity": 0.8, "purchased_last_30_days": "true"},
    "reebok": {"brand_affinity": 0.1},
    "puma": {"brand_affinity": 0.5, "loyalty_tier": "silver"},
}


class NoopLogger:
    def log_assignment(self, event):  # noqa: D102
        pass

    def log_bandit_action(self, event):  # noqa: D102
        pass


def make_subjects(n: int, seed: int = 7) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    countries = ["US", "Canada", "Mexico", "France", "UK", "Germany", "Japan"]
    out = []
    for i in range(n):
        out.append((f"user-{i:06d}", {
            "country": rng.choice(countries),
            "email": rng.choice(["a@mycompany.com", f"u{i}@example.com", f"u{i}@gmail.com"]),
            "age": rng.randint(18, 80),
            "account_age": round(rng.uniform(0, 10), 2),
            "gender_identity": rng.choice(["female", "male", "nonbinary"]),
        }))
    return out


def eppo_client(flags: bytes, bandits: bytes | None):
    try:
        import eppo_client
        from eppo_client import Configuration as EppoConfiguration
        from eppo_client.config import Config
    except ImportError:
        return None
    class EppoNoopLogger(eppo_client.AssignmentLogger):
        def log_assignment(self, event):
            pass

        def log_bandit_action(self, event):
            pass

    cfg = EppoConfiguration(flags_configuration=flags, bandits_configuration=bandits)
    return eppo_client.init(Config(api_key="offline", assignment_logger=EppoNoopLogger(),
                                   poll_interval_seconds=None, initial_configuration=cfg))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warm", action="store_true", help="same subjects and clients every run (dedup hits)")
    args = parser.parse_args()
    logging.getLogger("sortition.serving").setLevel(logging.ERROR)

    subjects = make_subjects(args.subjects)
    n = len(subjects)
    flags = (UFC / "flags-v1.json").read_bytes()
    bandit_flags = (UFC / "bandit-flags-v1.json").read_bytes()
    models = (UFC / "bandit-models-v1.json").read_bytes()

    sortition_flags = Configuration.from_json(flags)
    sortition_bandits = Configuration.from_json(bandit_flags, models)
    have_eppo = eppo_client(flags, None) is not None
    runs = [subjects] * args.repeats if args.warm else [
        [(f"r{r}-{k}", a) for k, a in subjects] for r in range(args.repeats)]

    def clients() -> dict:
        """Fresh clients (cold: empty dedup caches), or the same ones when --warm."""
        out = {"ours": Client(sortition_flags, NoopLogger()), "ours_b": Client(sortition_bandits, NoopLogger())}
        if have_eppo:
            out["eppo"], out["eppo_b"] = eppo_client(flags, None), eppo_client(bandit_flags, models)
        return out

    warm = clients()
    warm["ours_b"].get_bandit_actions(BANDIT_FLAG, subjects[:50], ACTIONS, "default")  # import numpy first

    def work(c: dict, subs: list) -> dict:
        ga, gb = c["ours"].get_assignment, c["ours_b"].get_bandit_action
        out = {
            "get_assignment (single)": lambda: [ga(FLAG, k, a, "default") for k, a in subs],
            "get_assignments (batch, per subject)": lambda: c["ours"].get_assignments(FLAG, subs, "default"),
            "get_bandit_action (single)": lambda: [gb(BANDIT_FLAG, k, a, ACTIONS, "default") for k, a in subs],
            "get_bandit_actions (batch, per subject)":
                lambda: c["ours_b"].get_bandit_actions(BANDIT_FLAG, subs, ACTIONS, "default"),
        }
        if have_eppo:
            es, eb = c["eppo"].get_string_assignment, c["eppo_b"].get_bandit_action
            out["assign"] = lambda: [es(FLAG, k, a, "default") for k, a in subs]
            out["bandit"] = lambda: [eb(BANDIT_FLAG, k, a, ACTIONS, "default") for k, a in subs]
        return out

    peer_of = {"get_assignment (single)": "assign", "get_assignments (batch, per subject)": "assign",
               "get_bandit_action (single)": "bandit", "get_bandit_actions (batch, per subject)": "bandit"}
    agree = ""
    if not have_eppo:
        print("eppo-server-sdk is not installed: showing Sortition's figures only (pip install eppo-server-sdk)")
    else:
        es, eb = warm["eppo"].get_string_assignment, warm["eppo_b"].get_bandit_action
        ga, gb = warm["ours"].get_assignment, warm["ours_b"].get_bandit_action
        mismatches = sum(es(FLAG, k, a, "default") != ga(FLAG, k, a, "default") for k, a in subjects)
        bandit_mismatches = 0
        for k, a in subjects:
            theirs, mine = eb(BANDIT_FLAG, k, a, ACTIONS, "default"), gb(BANDIT_FLAG, k, a, ACTIONS, "default")
            bandit_mismatches += (theirs.variation, theirs.action) != (mine.variation, mine.action)
        agree = (f"agreement with Eppo on {n} subjects: assignments {n - mismatches}/{n}, "
                 f"bandit (variation, action) {n - bandit_mismatches}/{n}")

    # Interleave the runs (ours, theirs, ours, ...) so load on a shared machine hits both alike;
    # the garbage collector is paused inside each timed run, as timeit does.
    samples: dict[str, list[float]] = {}
    for subs in runs:
        for name, fn in work(warm if args.warm else clients(), subs).items():
            gc.collect()
            gc.disable()
            t0 = time.process_time()
            fn()
            samples.setdefault(name, []).append((time.process_time() - t0) / n * 1e6)
            gc.enable()
    median = {name: statistics.median(v) for name, v in samples.items()}

    mode = "warm (repeated subjects, dedup hits)" if args.warm else "cold (fresh clients, new subjects, events built)"
    print(f"Sortition serving benchmark: {n} subjects, {mode}, median of {args.repeats} runs, CPU microseconds per call")
    print(f"{'call':42s} {'sortition':>10s} {'eppo-sdk':>10s} {'eppo/sortition':>15s}")
    for name, peer in peer_of.items():
        us, p = median[name], median.get(peer)
        if p is None:
            print(f"{name:42s} {us:10.2f} {'-':>10s} {'-':>15s}")
        else:
            print(f"{name:42s} {us:10.2f} {p:10.2f} {p / us:14.2f}x")
    if agree:
        print(agree)
    print("(ratio > 1: Sortition faster; batch rows compare Sortition's batch with Eppo's per-call loop)")


if __name__ == "__main__":
    main()
