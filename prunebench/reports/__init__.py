"""Comparison reports: the flat results table (+ the runs' MLflow histories and artifacts) -> a
self-contained folder with ``index.html``, ``README.md``, ``tables/*.csv`` and ``figures/*.png``.

>>> from prunebench.reports import build_report
>>> build_report("results/digits-quick", "reports/digits-quick")      # doctest: +SKIP
"""

from prunebench.reports.build import build_report
from prunebench.reports.inputs import ReportError, resolve_source
from prunebench.reports.stats import paired_table, pareto_mask, with_costs
from prunebench.reports.tables import leaderboard_table, mean_std_ci, stability_table

__all__ = [
    "build_report",
    "leaderboard_table",
    "mean_std_ci",
    "paired_table",
    "pareto_mask",
    "stability_table",
    "with_costs",
    "ReportError",
    "resolve_source",
]
