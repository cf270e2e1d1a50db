"""Factorial effects: how much of the spread in results each axis, and each pair, explains.

Per workload the final objective is modelled as optimizer + scheduler + regularizer + their
two-way interactions, seeds as replicates, and tested with a **type II ANOVA** (each term
adjusted for every term that does not contain it; right for the unbalanced grids that
``skip_incompatible`` leaves). The sums of squares are computed here with least squares on a
treatment-coded design (one ``lstsq`` for many responses at once, so a thousand null sweeps
cost one call) and agree with ``statsmodels``' ``anova_lm(typ=2)``, which the tests run
directly; ``statsmodels`` itself is only needed for the cross-workload mixed model.

Effect sizes: ``eta_sq`` = SS_term / SS_total (the share of the variance a user reads:
"the optimizer explains 61 %"), ``partial_eta_sq`` = SS/(SS + SS_error) and
``omega_sq`` = (SS − df·MS_error)/(SS + (N − df)·MS_error) (partial ω², less biased for small
samples, clipped at 0). A term is ``significant`` when its Holm-adjusted p-value (over the
model's terms) is below ``alpha``: the chance of calling any term significant in a sweep where
nothing matters is at most ``alpha``.

Across workloads the scales differ, so the values are first normalised per workload
(``robust.normalized``: 1 = best result on the workload, 0 = worst). A block model
(workload + terms) is fitted and its residuals tested for normality (Shapiro–Wilk). Where
normality holds, a linear **mixed model** (statsmodels ``MixedLM``, random intercept per
workload) tests each term with a Wald χ²; where it fails, the same ANOVA runs on the
within-workload **ranks** (rank-transform ANOVA, Conover & Iman 1981), which needs no
normality. Which one was used, and why, is part of the result.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench_service.vocab import TUNED_AXES

ALPHA = 0.05
#: A Shapiro–Wilk p-value below this says the residuals are not normal.
NORMALITY_ALPHA = 0.05
#: Shapiro–Wilk is defined for up to 5,000 values; larger samples are subsampled (fixed seed).
SHAPIRO_MAX = 5000
#: The mixed model's fit time grows with its coefficients (a 1,000-trial grid with every
#: two-way interaction has ~150: 20 s); above this many, it holds the main effects only.
MIXED_MAX_COLUMNS = 40
TERM_WORDS = {"optimizer": "the optimizer", "scheduler": "the schedule",
              "regularizer": "the regularizer", "workload": "the workload"}
EFFECT_COLUMNS = ["term", "df", "sum_sq", "F", "p", "p_holm", "eta_sq", "partial_eta_sq",
                  "omega_sq", "significant"]


Term = tuple[str, ...]


@dataclass(frozen=True)
class Effects:
    """One ANOVA: the table (``EFFECT_COLUMNS``, residual row last) and its context."""

    table: pd.DataFrame
    n: int
    df_resid: int
    notes: list[str] = field(default_factory=list)
    normality_p: float = math.nan


@dataclass(frozen=True)
class CrossWorkload:
    """The across-workload model: which method, why, its term tests and variance shares."""

    method: str  # "mixed" | "rank"
    reason: str
    table: pd.DataFrame  # term, statistic, df, p, p_holm, significant, eta_sq
    normality_p: float
    notes: list[str] = field(default_factory=list)


def term_name(term: Term) -> str:
    return ":".join(term)


def describe_term(name: str) -> str:
    """``optimizer:scheduler`` → ``the optimizer × schedule interaction``."""
    parts = name.split(":")
    if len(parts) == 1:
        return TERM_WORDS.get(name, name)
    words = [TERM_WORDS.get(p, p).removeprefix("the ") for p in parts]
    return f"the {' × '.join(words)} interaction"


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN); along axis 0."""
    p = np.asarray(p, dtype="float64")
    flat = p.reshape(p.shape[0], -1)
    out = np.full_like(flat, np.nan)
    for j in range(flat.shape[1]):
        col = flat[:, j]
        ok = np.flatnonzero(np.isfinite(col))
        m = ok.size
        if not m:
            continue
        order = ok[np.argsort(col[ok], kind="stable")]
        adj = np.maximum.accumulate((m - np.arange(m)) * col[order])
        out[order, j] = np.minimum(adj, 1.0)
    return out.reshape(p.shape)


def _dummies(levels: pd.Series) -> np.ndarray:
    """Treatment coding: one 0/1 column per level but the first (sorted)."""
    cats = sorted(levels.astype(str).unique())
    codes = pd.Categorical(levels.astype(str), categories=cats).codes
    return (codes[:, None] == np.arange(1, len(cats))[None, :]).astype("float64")


def design(frame: pd.DataFrame, terms: Sequence[Term]) -> dict[Term, np.ndarray]:
    """Columns of each term (an interaction: products of its factors' dummy columns)."""
    mains = {f: _dummies(frame[f]) for f in {f for t in terms for f in t}}
    cols: dict[Term, np.ndarray] = {}
    for t in terms:
        block = mains[t[0]]
        for f in t[1:]:
            other = mains[f]
            block = (block[:, :, None] * other[:, None, :]).reshape(len(frame), -1)
        cols[t] = block
    return cols


class _Gram:
    """Least squares on column subsets of one design through its Gram matrix.

    ``X'X``, ``X'y`` and ``y'y`` are formed once; the RSS of any sub-model is then
    ``y'y − (X_S'y)' G_SS⁺ (X_S'y)``, an eigen-decomposition of a p × p block (rank read off
    the eigenvalues, as ``lstsq`` would), so the nested fits of a type II ANOVA cost
    O(p³) each instead of O(N p²).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.g = x.T @ x
        self.xy = x.T @ y
        self.yy = (y * y).sum(axis=0)

    def rss(self, cols: np.ndarray) -> tuple[np.ndarray, int]:
        g = self.g[np.ix_(cols, cols)]
        lam, vec = np.linalg.eigh(g)
        keep = lam > max(float(lam.max(initial=0.0)), 1e-300) * len(cols) * 1e-12
        v = vec[:, keep]
        proj = v.T @ self.xy[cols]
        fitted = (proj ** 2 / lam[keep][:, None]).sum(axis=0)
        return np.maximum(self.yy - fitted, 0.0), int(keep.sum())


def _type2(x_of: dict[Term, np.ndarray], y: np.ndarray, fixed: Sequence[Term] = ()
           ) -> tuple[dict[Term, tuple[int, np.ndarray]], np.ndarray, int, int]:
    """Type II sums of squares (and df) of every term; RSS, df_resid and rank of the full
    model. ``y`` is ``N × R`` (R responses fitted at once)."""
    n = y.shape[0]
    terms = list(x_of)
    blocks, where, start = [np.ones((n, 1))], {}, 1
    for t in terms:
        blocks.append(x_of[t])
        where[t] = np.arange(start, start + x_of[t].shape[1])
        start += x_of[t].shape[1]
    gram = _Gram(np.hstack(blocks), y)

    def cols(ts: Sequence[Term]) -> np.ndarray:
        return np.concatenate([np.zeros(1, dtype=np.intp), *(where[t] for t in ts)])

    rss_full, rank_full = gram.rss(cols(terms))
    out: dict[Term, tuple[int, np.ndarray]] = {}
    for t in terms:
        if t in fixed:
            continue
        reduced = [u for u in terms if u != t and not set(t) <= set(u)]
        rss_r, rank_r = gram.rss(cols(reduced))
        rss_t, rank_t = gram.rss(cols([*reduced, t]))
        out[t] = (rank_t - rank_r, np.maximum(rss_r - rss_t, 0.0))
    return out, rss_full, n - rank_full, rank_full


def model_terms(frame: pd.DataFrame, factors: Sequence[str] = TUNED_AXES,
                interactions: bool = True) -> list[Term]:
    """Main effects of the factors that vary, and their two-way interactions."""
    varying = [f for f in factors if frame[f].nunique() > 1]
    terms: list[Term] = [(f,) for f in varying]
    if interactions:
        terms += list(itertools.combinations(varying, 2))
    return terms


def anova(
    frame: pd.DataFrame, response: str | np.ndarray = "value", *,
    factors: Sequence[str] = TUNED_AXES, block: str | None = None, alpha: float = ALPHA,
) -> Effects:
    """Type II ANOVA of ``response`` on the factors and their two-way interactions.

    Interactions are dropped (and said so) when the data leave no residual degrees of freedom
    for them (one seed of a full grid leaves only the three-way interaction as error).
    ``block`` adds a nuisance factor (the workload) that is adjusted for but not reported
    as an effect. ``response`` may be an ``N × R`` array: the columns are analysed at once and
    the table holds one row per term with array cells (used by the null-sweep test).
    """
    from scipy import stats

    notes: list[str] = []
    y = frame[response].to_numpy("float64") if isinstance(response, str) else \
        np.asarray(response, dtype="float64")
    many = y.ndim == 2
    y2 = y if many else y[:, None]
    terms = model_terms(frame, factors)
    if not terms:
        notes.append("no axis takes more than one value here: nothing to separate")
    fixed: list[Term] = [(block,)] if block and frame[block].nunique() > 1 else []
    x_of = design(frame, [*fixed, *terms])
    ss, rss, df_resid, _ = _type2(x_of, y2, fixed)
    if df_resid <= 0 and any(len(t) > 1 for t in terms):
        notes.append("no replicates left for the interactions (one seed per cell?): "
                     "main effects only")
        terms = model_terms(frame, factors, interactions=False)
        x_of = design(frame, [*fixed, *terms])
        ss, rss, df_resid, _ = _type2(x_of, y2, fixed)
    n = y2.shape[0]
    total = ((y2 - y2.mean(axis=0)) ** 2).sum(axis=0)
    rows = []
    ms_e = rss / df_resid if df_resid > 0 else np.full_like(rss, np.nan)
    for t, (df, s) in ss.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            f = (s / df) / ms_e if df > 0 else np.full_like(s, np.nan)
            p = stats.f.sf(f, df, df_resid) if df > 0 and df_resid > 0 else np.full_like(s, np.nan)
            eta = np.where(total > 0, s / total, 0.0)
            peta = np.where(s + rss > 0, s / (s + rss), 0.0)
            omega = np.maximum((s - df * ms_e) / (s + (n - df) * ms_e), 0.0)
        rows.append({"term": term_name(t), "df": df, "sum_sq": s, "F": f, "p": p,
                     "eta_sq": eta, "partial_eta_sq": peta, "omega_sq": omega})
    p_all = np.array([np.broadcast_to(r["p"], (y2.shape[1],)) for r in rows]) if rows else \
        np.zeros((0, y2.shape[1]))
    p_holm = holm(p_all) if rows else p_all
    for i, r in enumerate(rows):
        r["p_holm"] = p_holm[i]
        r["significant"] = np.nan_to_num(p_holm[i], nan=1.0) < alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        resid_share = np.where(total > 0, rss / total, 0.0)
    rows.append({"term": "residual", "df": df_resid, "sum_sq": rss, "F": np.nan, "p": np.nan,
                 "p_holm": np.nan, "eta_sq": resid_share,
                 "partial_eta_sq": np.nan, "omega_sq": np.nan, "significant": False})
    if not many:
        rows = [{k: (v[0] if isinstance(v, np.ndarray) and v.ndim else v) for k, v in r.items()}
                for r in rows]
    table = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    if not many:
        table = table.astype({"df": "int64", "significant": bool})
    normality = math.nan
    if not many and df_resid > 2 and n >= 3:
        x_full = np.hstack([np.ones((n, 1)), *x_of.values()])
        coef, *_ = np.linalg.lstsq(x_full, y2[:, 0], rcond=None)
        normality = shapiro_p(y2[:, 0] - x_full @ coef)
    return Effects(table, n, df_resid, notes, normality)


def shapiro_p(residuals: np.ndarray) -> float:
    """Shapiro–Wilk p-value of the residuals (NaN when they are all equal)."""
    from scipy import stats

    r = np.asarray(residuals, dtype="float64")
    r = r[np.isfinite(r)]
    if r.size < 3 or np.ptp(r) <= 1e-12 * max(1.0, float(np.abs(r).max())):
        return math.nan
    if r.size > SHAPIRO_MAX:
        r = np.random.default_rng(0).choice(r, SHAPIRO_MAX, replace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.shapiro(r).pvalue)


def per_workload(frame: pd.DataFrame, alpha: float = ALPHA) -> dict[str, Effects]:
    """``anova`` of every workload."""
    return {str(w): anova(g.reset_index(drop=True), alpha=alpha)
            for w, g in frame.groupby("workload", sort=True)}


def cross_workload(frame: pd.DataFrame, mode: str, alpha: float = ALPHA) -> CrossWorkload | None:
    """The across-workload model (see the module docstring), or ``None`` for one workload."""
    from bench_service.analysis.robust import normalized

    if frame["workload"].nunique() < 2:
        return None
    data = frame.assign(score=normalized(frame, mode)).reset_index(drop=True)
    notes: list[str] = []
    block = anova(data, "score", block="workload", alpha=alpha)
    normal_p = block.normality_p
    terms = model_terms(data)
    if not terms:
        return CrossWorkload("none", "no axis takes more than one value", pd.DataFrame(),
                             normal_p)
    if math.isfinite(normal_p) and normal_p >= NORMALITY_ALPHA:
        reason = (f"the block model's residuals pass Shapiro–Wilk (p = {normal_p:.3g} ≥ "
                  f"{NORMALITY_ALPHA}): linear mixed model, workload as random intercept")
        try:
            kept = [t for t in terms if term_name(t) in set(block.table["term"])]
            x_of = design(data, kept)
            mixed_terms = kept
            if sum(x_of[t].shape[1] for t in kept) > MIXED_MAX_COLUMNS:
                mixed_terms = [t for t in kept if len(t) == 1]
                notes.append(f"the interactions have more than {MIXED_MAX_COLUMNS} "
                             "coefficients: the mixed model holds the main effects, the "
                             "interactions are tested in the block ANOVA")
            table = _mixed(data, mixed_terms, alpha)
            rest = block.table[block.table["term"].isin(
                [term_name(t) for t in kept if t not in mixed_terms])]
            if len(rest):
                table = pd.concat([table.drop(columns=["p_holm", "significant"]), pd.DataFrame(
                    {"term": rest["term"], "statistic": rest["F"], "df": rest["df"],
                     "p": rest["p"]})], ignore_index=True)
                table["p_holm"] = holm(table["p"].to_numpy())
                table["significant"] = table["p_holm"].fillna(1.0) < alpha
            shares = block.table.set_index("term")["eta_sq"]
            table["eta_sq"] = table["term"].map(shares)
            return CrossWorkload("mixed", reason, table, normal_p, notes)
        except ImportError:
            notes.append("statsmodels is not installed (pip install 'bench-service[analysis]'):"
                         " ranks used instead of the mixed model")
        except (np.linalg.LinAlgError, ValueError) as exc:
            notes.append(f"the mixed model could not be fitted ({exc}); ranks used instead")
    ranked = data.assign(rank=data.groupby("workload")["score"].rank(ascending=False))
    if not notes:
        shown = f"p = {normal_p:.3g} < {NORMALITY_ALPHA}" if math.isfinite(normal_p) \
            else "residuals all equal"
        reason = (f"the block model's residuals fail Shapiro–Wilk ({shown}): rank-transform "
                  "ANOVA on within-workload ranks, workload as block (no normality needed)")
    else:
        reason = "rank-transform ANOVA on within-workload ranks (mixed model failed)"
    res = anova(ranked, "rank", block="workload", alpha=alpha)
    t = res.table[res.table["term"] != "residual"]
    table = pd.DataFrame({"term": t["term"], "statistic": t["F"], "df": t["df"], "p": t["p"],
                          "p_holm": t["p_holm"], "significant": t["significant"],
                          "eta_sq": t["eta_sq"]}).reset_index(drop=True)
    return CrossWorkload("rank", reason, table, normal_p, notes + res.notes)


def _mixed(data: pd.DataFrame, terms: list[Term], alpha: float) -> pd.DataFrame:
    """MixedLM (random intercept per workload) with a Wald χ² test of each term's
    coefficients."""
    from scipy import stats
    from statsmodels.regression.mixed_linear_model import MixedLM

    x_of = design(data, terms)
    blocks, index, start = [np.ones((len(data), 1))], {}, 1
    for t in terms:
        blocks.append(x_of[t])
        index[t] = np.arange(start, start + x_of[t].shape[1])
        start += x_of[t].shape[1]
    x = np.hstack(blocks)
    # Drop dummy columns of empty interaction cells (all zero): MixedLM needs full rank.
    keep = np.flatnonzero(np.abs(x).sum(axis=0) > 0)
    x = x[:, keep]
    remap = {old: new for new, old in enumerate(keep)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = MixedLM(data["score"].to_numpy("float64"), x,
                      groups=data["workload"].astype(str).to_numpy()).fit(reml=True)
    params = np.asarray(fit.fe_params)
    cov = np.asarray(fit.cov_params())[: len(params), : len(params)]
    rows = []
    for t in terms:
        idx = np.array([remap[i] for i in index[t] if i in remap])
        if not idx.size:
            continue
        b, v = params[idx], cov[np.ix_(idx, idx)]
        chi2 = float(b @ np.linalg.pinv(v) @ b)
        df = int(np.linalg.matrix_rank(v))
        rows.append({"term": term_name(t), "statistic": chi2, "df": df,
                     "p": float(stats.chi2.sf(chi2, df)) if df else math.nan})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p"].to_numpy())
    table["significant"] = table["p_holm"].fillna(1.0) < alpha
    return table


def sentence(shares: pd.Series, where: str = "on this workload") -> str:
    """``on these workloads the optimizer explains 61 % of the variance, the schedule 22 %,
    their interaction 9 %`` from ``term → η²`` (terms under 1 % are left out)."""
    s = shares.drop(labels=["residual", "workload"], errors="ignore").dropna()
    s = s[s >= 0.01].sort_values(ascending=False)
    if s.empty:
        return f"{where} no axis explains as much as 1 % of the variance"
    parts = []
    for i, (name, v) in enumerate(s.items()):
        pct = f"{100 * v:.0f} %"
        what = describe_term(str(name))
        if ":" in str(name) and i and all(p in [str(n) for n in s.index[:i]]
                                          for p in str(name).split(":")):
            what = "their interaction" if len(s.index[:i]) == 2 else what
        parts.append(f"{what} explains {pct} of the variance" if i == 0 else f"{what} {pct}")
    rest = shares.get("residual")
    tail = f" (seeds and noise: {100 * rest:.0f} %)" if rest is not None and \
        np.isfinite(rest) else ""
    return f"{where} " + ", ".join(parts) + tail


def interaction_table(frame: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Mean value per level pair of axes ``a`` × ``b`` per workload (for interaction plots):
    ``workload, a, b, mean, n``. Parallel lines mean no interaction."""
    g = frame.groupby(["workload", a, b])["value"]
    return pd.DataFrame({"mean": g.mean(), "n": g.size()}).reset_index()
