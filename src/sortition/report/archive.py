"""The round archive of ``sortition round``: one report per round and an index page linking them.

    OUT/index.html                 every round, newest first, with its decisions
    OUT/round-0007/index.html      round 7's report (and its configuration.json, summary.json, rounds.*)
    OUT/summary.json, rounds.csv, rounds.parquet, configuration.json
                                   copies of the latest round's files, at a stable path for dashboards

Folder names come from the round number only, never from user text, so nothing is written
outside ``OUT``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sortition.display import Html, escape, number, table
from sortition.experiment.sequential import SequentialExperiment
from sortition.experiment.srm import SRMResult
from sortition.report.html import _CSS, _atomic_write, write_report

LATEST_FILES = ("summary.json", "rounds.csv", "rounds.parquet", "configuration.json")


def round_folder(out: str | Path, number_: int) -> Path:
    """``OUT/round-NNNN`` for round ``number_`` (1-based, as the report counts)."""
    if isinstance(number_, bool) or not isinstance(number_, int) or number_ < 1:
        raise ValueError(f"round number must be a positive integer, got {number_!r}")
    return Path(out) / f"round-{number_:04d}"


def write_round(
    out: str | Path,
    experiment: SequentialExperiment,
    *,
    title: str,
    source: str | None = None,
    index_title: str = "Sortition rounds",
    srm: SRMResult | None = None,
) -> Path:
    """Write the latest round's report into its round folder, refresh the latest copies and the index;
    return the round's ``index.html``."""
    out = Path(out)
    number_ = experiment.results_[-1].number
    folder = round_folder(out, number_)
    nav = ['<a href="../index.html">all rounds</a>']
    if number_ > 1 and round_folder(out, number_ - 1).exists():
        nav.append(f'<a href="../{round_folder(out, number_ - 1).name}/index.html">round {number_ - 1}</a>')
    page = write_report(folder, experiment, title=title, source=source, links=Html(" · ".join(nav)), srm=srm)
    for name in LATEST_FILES:
        tmp = out / (name + ".tmp")
        shutil.copyfile(folder / name, tmp)
        tmp.replace(out / name)
    write_index(out, title=index_title)
    return page


def write_index(out: str | Path, *, title: str = "Sortition rounds") -> Path:
    """``OUT/index.html``: one row per round folder (from its ``summary.json``), newest first."""
    out = Path(out)
    rows = []
    for folder in sorted(out.glob("round-[0-9][0-9][0-9][0-9]"), reverse=True):
        try:
            summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a folder this run did not write, or a half-copied one: not listed
        decisions = summary.get("decisions", [])
        overall = next((d["label"] for d in decisions if d.get("scope") == "overall"), "-")
        ships = [
            f"segment {d['scope']}: {d['label']}"
            for d in decisions
            if d.get("scope") != "overall" and d.get("decision") == "SHIP"
        ]
        link = Html(
            f'<a href="{escape(folder.name)}/index.html">'
            f"round {escape(summary.get('round', folder.name))}</a>"
        )
        rows.append(
            [
                link,
                number(summary.get("visitors_this_round")),
                number(summary.get("visitors")),
                len(summary.get("segments", [])),
                overall,
                "; ".join(ships) or "-",
            ]
        )
    body = table(["round", "visitors", "total", "segments", "overall decision", "segments that ship"], rows)
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}: every round</h1>{body}"
        '<p class="note">Latest files for dashboards: <code>summary.json</code>, <code>rounds.csv</code>, '
        "<code>rounds.parquet</code>, <code>configuration.json</code> in this folder.</p></body></html>"
    )
    path = out / "index.html"
    _atomic_write(path, page)
    return path
