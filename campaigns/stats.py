"""The report's uplift test: ``experiments.stats.two_proportion``, re-exported.

Experiments and campaign reports rest on one method (issue #17): the uplift's interval and its
p-value come from the same unpooled z statistic, so "significant" is exactly "the interval excludes
0" (docs/experiments.md). The campaign variants' analysis (selectors.variant_report) uses
``experiments.stats.analyze``.
"""

from __future__ import annotations

from experiments.stats import Z95, two_proportion

__all__ = ["Z95", "two_proportion"]
