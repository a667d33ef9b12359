"""Statistics for comparing methods on the same cases: paired Wilcoxon signed-rank tests with
Holm's correction, bootstrap confidence intervals of mean scores, and how stable the BraTS ranking
is when the cases are resampled.

Every function takes ``tables``: method name → long metrics table (``case, region, dice, hd95,
…``, one row per case × region, as ``brats evaluate`` writes), and compares methods on the cases
all of them scored (:func:`shared_cases`).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import rankdata, wilcoxon

from brats.errors import BratsInputError
from brats.leaderboard import RANKED_METRICS, REGION_ORDER

#: Bootstrap resamples used unless told otherwise.
N_BOOT = 2000


def shared_cases(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each table restricted to the cases every method scored (rows in their original order).

    Raises:
        BratsInputError: no tables, or no case common to all of them.
    """
    if not tables:
        raise BratsInputError("no metrics tables given")
    common = set.intersection(*(set(t["case"]) for t in tables.values()))
    if not common:
        raise BratsInputError(f"the methods {', '.join(tables)} share no scored case")
    return {name: t[t["case"].isin(common)] for name, t in tables.items()}


def _wide(tables: dict[str, pd.DataFrame], metric: str, region: str) -> pd.DataFrame:
    """(shared cases, methods) table of one metric on one region, index sorted by case."""
    columns = {}
    for name, table in tables.items():
        if metric not in table.columns:
            raise BratsInputError(f"{name}: no {metric!r} column")
        rows = table[table["region"] == region]
        columns[name] = rows.groupby("case")[metric].first()
    return pd.DataFrame(columns).sort_index()


def holm(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order.

    With the m p-values sorted ascending, p₍ᵢ₎ becomes max over j ≤ i of min(1, (m − j + 1) p₍ⱼ₎)
    (Holm 1979, Scand. J. Statist. 6:65–70); NaN stays NaN and does not count in m.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = order.size
    adjusted = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adjusted)
    return out


def paired_tests(tables: dict[str, pd.DataFrame], metrics: tuple[str, ...] = ("dice", "hd95")
                 ) -> pd.DataFrame:
    """Two-sided paired Wilcoxon signed-rank test of every pair of methods, per region and metric.

    Over the shared cases where both scores are finite; zero differences are dropped
    (``zero_method="wilcox"``); scipy picks the exact null distribution for up to 50 cases without
    ties, the normal approximation otherwise. A pair whose differences are all zero gets p = 1.
    Holm's correction runs over the pairs of one region and metric (one family per row group).

    Returns:
        One row per (metric, region, pair): ``metric, region, method_a, method_b, n`` (cases
        compared), ``mean_a, mean_b, mean_diff`` (a − b), ``statistic`` (scipy's W, the smaller
        rank sum), ``p_value, p_holm, better`` (the method with the better mean, or ``"="``).

    Raises:
        BratsInputError: fewer than two methods, or a metric missing from a table.
    """
    if len(tables) < 2:
        raise BratsInputError(f"paired tests need two methods or more, got {len(tables)}")
    tables = shared_cases(tables)
    rows = []
    for metric in metrics:
        higher_is_better = RANKED_METRICS.get(metric, True)
        for region in REGION_ORDER:
            wide = _wide(tables, metric, region)
            family = []
            for a, b in combinations(wide.columns, 2):
                pair = wide[[a, b]].replace([np.inf, -np.inf], np.nan).dropna()
                x, y = pair[a].to_numpy(float), pair[b].to_numpy(float)
                diff = x - y
                if pair.empty:
                    stat, p = np.nan, np.nan
                elif np.all(diff == 0):
                    stat, p = np.nan, 1.0
                else:
                    result = wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
                    stat, p = float(result.statistic), float(result.pvalue)
                mean_diff = float(diff.mean()) if diff.size else np.nan
                better = ("=" if not mean_diff or np.isnan(mean_diff)
                          else a if (mean_diff > 0) == higher_is_better else b)
                family.append({"metric": metric, "region": region, "method_a": a, "method_b": b,
                               "n": int(diff.size), "mean_a": float(x.mean()) if x.size else np.nan,
                               "mean_b": float(y.mean()) if y.size else np.nan,
                               "mean_diff": mean_diff, "statistic": stat, "p_value": p,
                               "better": better})
            adjusted = holm([row["p_value"] for row in family])
            for row, p_holm in zip(family, adjusted):
                row["p_holm"] = float(p_holm)
            rows.extend(family)
    columns = ["metric", "region", "method_a", "method_b", "n", "mean_a", "mean_b", "mean_diff",
               "statistic", "p_value", "p_holm", "better"]
    return pd.DataFrame(rows, columns=columns)


def bootstrap_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, n) case indices drawn with replacement by ``numpy.random.default_rng(seed)``."""
    if n < 1 or n_boot < 1:
        raise BratsInputError(f"bootstrap needs at least one case and one resample (n={n}, "
                              f"n_boot={n_boot})")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_ci(values: np.ndarray, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95
                 ) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (1-D): the (1 ± level) / 2
    quantiles (numpy's linear interpolation) of the means of ``n_boot`` resamples drawn with
    :func:`bootstrap_indices`."""
    values = np.asarray(values, dtype=float)
    if not 0 < level < 1:
        raise BratsInputError(f"confidence level must lie in (0, 1), got {level}")
    means = values[bootstrap_indices(values.size, n_boot, seed)].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def mean_ci(tables: dict[str, pd.DataFrame], metrics: tuple[str, ...] = ("dice", "hd95"),
            n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Mean of each method, region and metric with its bootstrap interval (:func:`bootstrap_ci`,
    the same ``seed`` for every cell), over the finite values of the shared cases.

    Returns:
        Columns ``method, metric, region, n, mean, ci_low, ci_high`` (HD95 in mm).
    """
    tables = shared_cases(tables)
    rows = []
    for metric in metrics:
        for region in REGION_ORDER:
            wide = _wide(tables, metric, region)
            for method in wide.columns:
                values = wide[method].replace([np.inf, -np.inf], np.nan).dropna().to_numpy(float)
                low, high = (bootstrap_ci(values, n_boot, seed, level) if values.size
                             else (np.nan, np.nan))
                rows.append({"method": method, "metric": metric, "region": region,
                             "n": int(values.size),
                             "mean": float(values.mean()) if values.size else np.nan,
                             "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["method", "metric", "region", "n", "mean", "ci_low",
                                       "ci_high"])


def case_ranks(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """(shared cases, methods): each method's BraTS rank of a case averaged over the regions
    (WT, TC, ET) and ranked metrics (Dice, HD95), ties sharing the best rank as in
    :func:`brats.leaderboard.rank_scores`; its column mean is the ranking score.

    Raises:
        BratsInputError: a ranked value is missing (NaN) for a shared case.
    """
    tables = shared_cases(tables)
    ranks = []
    for metric, higher_is_better in RANKED_METRICS.items():
        for region in REGION_ORDER:
            wide = _wide(tables, metric, region)
            values = wide.to_numpy(float)
            if np.isnan(values).any():
                raise BratsInputError(f"missing {region} {metric} values; every method needs "
                                      "every shared case and region")
            ranks.append(rankdata(-values if higher_is_better else values, method="min", axis=1))
    return pd.DataFrame(np.mean(ranks, axis=0), index=wide.index, columns=wide.columns)


def rank_stability(tables: dict[str, pd.DataFrame], n_boot: int = N_BOOT, seed: int = 0
                   ) -> pd.DataFrame:
    """The ranking and how often it holds when the shared cases are resampled.

    Each resample (:func:`bootstrap_indices`) recomputes every method's ranking score as the
    mean of its resampled :func:`case_ranks` and ranks the methods (ties share the best place).

    Returns:
        Indexed by method, best first: ``rank_score`` (on all shared cases), ``place`` (1 = best),
        ``stability`` (share of resamples in which the method keeps its place) and ``p_first``
        (share in which it is first).
    """
    per_case = case_ranks(tables)
    values = per_case.to_numpy(float)
    score = values.mean(axis=0)
    place = rankdata(score, method="min")
    boot = values[bootstrap_indices(values.shape[0], n_boot, seed)].mean(axis=1)
    boot_place = rankdata(boot, method="min", axis=1)
    out = pd.DataFrame({"rank_score": score, "place": place.astype(int),
                        "stability": (boot_place == place).mean(axis=0),
                        "p_first": (boot_place == 1).mean(axis=0)}, index=per_case.columns)
    out.index.name = "method"
    return out.sort_values(["place", "rank_score"], kind="stable")
