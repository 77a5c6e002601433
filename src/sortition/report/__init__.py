"""Plots (matplotlib, :mod:`sortition.report.plots`) and the self-contained HTML report of an adaptive
experiment, with its machine-readable side files (:mod:`sortition.report.facts`) and the round archive
(:mod:`sortition.report.archive`)."""

from sortition.report.facts import round_table, summary
from sortition.report.html import render, write_report

__all__ = ["render", "round_table", "summary", "write_report"]
