"""Answers, not just charts: which axis matters, what won, by how much and how sure we are.

Pure functions over the store's DataFrames (``Store.trials_frame``), in a layer above
``store``/``sweep`` and below the CLI and the dashboard:

* ``data``: one value per trial (diverged = worst, counted; unfinished cells left out);
* ``effects``: factorial type II ANOVA per workload, effect sizes, the cross-workload model;
* ``robust``: rliable's normalised scores, IQM, median, optimality gap, probability of
  improvement, stratified bootstrap intervals;
* ``ranking``: Friedman, Nemenyi, critical difference;
* ``paired``: per-seed paired differences with Holm-corrected p-values;
* ``algoperf``: performance profiles and AlgoPerf's score on time and steps to target;
* ``budget``: tuning-budget curves, one-shot against tuned, LR sensitivity;
* ``run``: all of them at once (``analyze``) and the plain-language summary.
"""

from __future__ import annotations

from bench_service.analysis.data import Prepared, prepare
from bench_service.analysis.run import Analysis, analyze, summarize, tables

__all__ = ["Analysis", "Prepared", "analyze", "prepare", "summarize", "tables"]
