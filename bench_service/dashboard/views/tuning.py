"""Tuning page: how each cell's equal tuning budget was spent, and what it found.

Shown for sweeps with a ``tuning`` section (issue #4): the optimisation history per cell
(objective by trial number, best so far), the objective against each searched
hyperparameter (DeepOBS's learning-rate sensitivity) and, once the tuner stores it, the
parameter importance per cell. Other sweeps get a one-line explanation instead.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from bench_service.dashboard import analysis, charts, data, state, ui


def main() -> None:
    ctx = state.context()
    st.title("Tuning")
    ui.stop_without_sweep(ctx)
    url, sid, fp = ctx.url, ctx.sweep_id, ctx.fingerprint
    trials = data.trials(url, sid, fp)
    if trials.empty or not (trials["role"] == "tuning").any():
        st.info(f"Sweep **{ctx.sweep_name}** was not tuned: each trial ran with the "
                "hyperparameters of its spec. A spec with a `tuning:` section (see "
                "`examples/tuned.yaml`) gives every cell the same tuning budget; its "
                "history and learning-rate sensitivity appear here.")
        return
    spec = data.spec(url, ctx.sweep_name, fp)
    raw_tuning = spec.get("tuning")
    tuning: dict[str, Any] = raw_tuning if isinstance(raw_tuning, dict) else {}
    raw_objective = tuning.get("objective")
    objective_spec: dict[str, Any] = raw_objective if isinstance(raw_objective, dict) else {}
    options = [o for o in analysis.objectives(trials[trials["role"] == "tuning"])
               if o.key.startswith(("final:", "best:")) or o.key == "objective"]
    by_key = {o.key: o for o in options}
    # The tuner's stored score is what Optuna optimised; without it, the final value of the
    # spec's objective metric is the closest stand-in.
    default = "objective" if "objective" in by_key else \
        f"final:{objective_spec.get('metric', 'val_loss')}"
    if default not in by_key:
        default = options[0].key
    c1, c2 = st.columns([3, 2])
    key = state.synced_choice(
        "Objective", list(by_key), param="objective", key="tune_objective", default=default,
        container=c1, format_func=lambda k: by_key[k].label, what="objective",
    )
    objective = by_key[key]
    spec_metric = objective_spec.get("metric")
    tuned_mode = objective_spec.get("mode", objective.mode)
    mode = tuned_mode if key == "objective" or objective.metric == spec_metric \
        else objective.mode
    budget = tuning.get("trials_per_cell")
    c2.markdown(
        f"**sampler** {tuning.get('sampler', '?')} · **pruner** {tuning.get('pruner', '?')}"
        + (f" · **budget** {budget} trials per cell" if budget else "")
        + f" · better is **{'lower' if mode == 'min' else 'higher'}**"
    )
    table = analysis.tuning_table(trials, key, mode)

    st.subheader("Optimisation history")
    ui.chart(charts.history_figure(table, objective.label), table, key="history",
             filename=f"{ctx.sweep_name}_history_{key}",
             caption="Each dot is a tuning trial (open: pruned); the line is the best so far in "
             "its cell. ✕: trials without a value (diverged/failed), which still used budget.")
    per_cell = table.groupby(["workload", "cell"]).agg(
        trials=("trial_id", "size"), best=("objective", "min" if mode == "min" else "max"),
        pruned=("status", lambda s: int((s == "pruned").sum())),
        diverged=("status", lambda s: int((s == "diverged").sum())),
    ).reset_index()
    cells = data.cells(url, sid, fp)
    if cells is not None and not cells.empty:
        stored = cells[["cell_key", "n_tuning", "n_pruned", "n_diverged", "best_value",
                        "tuning_cpu_seconds", "tuning_gpu_seconds"]]
        keys = table.drop_duplicates("cell_key")[["workload", "cell", "cell_key"]]
        per_cell = per_cell.merge(keys, on=["workload", "cell"], how="left").merge(
            stored, on="cell_key", how="left").drop(columns="cell_key")
        # What the budget counts is the tuner's number (a trial lost in a crash and run
        # again is one trial of the budget, though it left two rows).
        counted = pd.to_numeric(per_cell.pop("n_tuning"), errors="coerce")
        per_cell["trials"] = counted.fillna(per_cell["trials"]).astype("int64")
    st.dataframe(per_cell, hide_index=True, key="tune_cells")
    ui.table_download(per_cell, key="tune_cells", filename=f"{ctx.sweep_name}_tuning_cells",
                      label="Download per-cell summary (CSV)")

    st.subheader("Sensitivity to hyperparameters")
    params = analysis.varying_params(table)
    if not params:
        st.info("No hyperparameter varied between the tuning trials.")
    else:
        param = state.synced_choice(
            "Hyperparameter", params, param="param", key="tune_param", what="hyperparameter",
        )
        log_x = analysis.log_scaled(table[f"param:{param}"].astype("float64"))
        ui.chart(charts.sensitivity_figure(table, param, objective.label, log_x),
                 table[["workload", "cell", "trial_id", "number", "status", "objective",
                        f"param:{param}"]], key="sensitivity",
                 filename=f"{ctx.sweep_name}_sensitivity_{param}",
                 caption="Objective of each tuning trial against the hyperparameter "
                 "(as DeepOBS's learning-rate sensitivity plot).")

    st.subheader("Parameter importance")
    imp = data.importance(url, sid, fp)
    if imp is None or imp.empty:
        st.info("Parameter importance is not available for this sweep yet: the tuner stores "
                "it per cell (Optuna's importance evaluator) when a cell's study finishes.")
    else:
        cells = table.drop_duplicates("cell_key").set_index("cell_key")
        imp = imp.assign(cell=[
            f"{cells.loc[k, 'workload']}: {cells.loc[k, 'cell']}" if k in cells.index else k
            for k in imp["cell_key"]])
        ui.chart(charts.importance_figure(imp), imp, key="importance",
                 filename=f"{ctx.sweep_name}_importance",
                 caption="Share of the objective's variance explained by each "
                 "hyperparameter, per cell.")


main()
