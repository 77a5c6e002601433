"""Plots (matplotlib) and the self-contained HTML report of an adaptive experiment."""

from sortition.report.html import summary, write_report

__all__ = ["summary", "write_report"]
