"""``brats leaderboard``: mean scores per method and the BraTS rank-then-aggregate score.

Ranking, the BraTS 2017–2020 scheme (BraTS 2020 design document, zenodo.org/record/3718904, as
implemented in nnU-Net's ``Task082_BraTS_2020.py``, MIC-DKFZ/nnUNet @3d8be214): every method is
ranked on each case, for each region (WT, TC, ET) and each metric (Dice, HD95), with ties sharing
the best rank (``min``); the ranking score is the mean of those ranks (lower is better), also
given divided by the number of methods.

A ``brats reproduce`` folder counts as its cross-validation metrics (``cv_metrics.csv``) and, when
its tuned post-processing was scored (``cv_metrics_pp.csv``, :mod:`brats.postprocess`), as a
second method ``<name>+pp``.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from brats.errors import BratsInputError

REGION_ORDER = ("WT", "TC", "ET")
RANKED_METRICS = {"dice": True, "hd95": False}  # metric → higher is better
#: The metrics files of a ``brats reproduce`` folder: plain, and post-processed (``+pp`` row).
CV_METRICS, CV_METRICS_PP, PP_SUFFIX = "cv_metrics.csv", "cv_metrics_pp.csv", "+pp"


def read_metrics(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a metrics CSV written by ``brats evaluate``; checks the columns it needs."""
    p = Path(path)
    if not p.is_file():
        raise BratsInputError(f"{p}: metrics file not found")
    try:
        table = pd.read_csv(p)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise BratsInputError(f"{p}: not a readable CSV ({reason})") from None
    needed = {"case", "region", *RANKED_METRICS}
    if not needed <= set(table.columns):
        raise BratsInputError(f"{p}: not a brats metrics CSV (needs columns {sorted(needed)})")
    table = table[table["region"].isin(REGION_ORDER)]
    if table.empty:
        raise BratsInputError(f"{p}: no rows for the regions {', '.join(REGION_ORDER)}")
    for metric in RANKED_METRICS:
        values = pd.to_numeric(table[metric], errors="coerce")
        bad = table.loc[values.isna() & table[metric].notna(), metric]
        if len(bad):
            raise BratsInputError(f"{p}: column {metric} holds non-numeric values "
                                  f"(e.g. {bad.iloc[0]!r})")
        table = table.assign(**{metric: values})
    return table


def load_tables(paths: list[str | os.PathLike[str]], names: list[str]) -> dict[str, pd.DataFrame]:
    """Method name → metrics table, for metrics CSVs and ``brats reproduce`` folders.

    A folder gives ``name`` (its ``cv_metrics.csv``) and, when it holds ``cv_metrics_pp.csv``,
    ``name+pp``.

    Raises:
        BratsInputError: a folder without ``cv_metrics.csv``, or two methods of one name.
    """
    if len(names) != len(paths):
        raise BratsInputError(f"{len(names)} name(s) for {len(paths)} metrics file(s) or folder(s)")
    tables: dict[str, pd.DataFrame] = {}
    for name, path in zip(names, map(Path, paths)):
        found = {name: path}
        if path.is_dir():
            if not (path / CV_METRICS).is_file():
                raise BratsInputError(f"{path}: no {CV_METRICS}; give a metrics CSV or a brats "
                                      "reproduce folder")
            found = {name: path / CV_METRICS}
            if (path / CV_METRICS_PP).is_file():
                found[name + PP_SUFFIX] = path / CV_METRICS_PP
        for method, file in found.items():
            if method in tables:
                raise BratsInputError(f"two methods are named {method!r}; use --name")
            tables[method] = read_metrics(file)
    return tables


def rank_scores(tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Mean BraTS rank of each method over cases × regions × metrics (lower is better).

    Raises:
        BratsInputError: the methods were not scored on the same cases.
    """
    names = list(tables)
    case_sets = {n: set(t["case"]) for n, t in tables.items()}
    first = case_sets[names[0]]
    for name in names[1:]:
        if case_sets[name] != first:
            diff = sorted(case_sets[name] ^ first)
            raise BratsInputError(f"{name} and {names[0]} were scored on different cases "
                                  f"({', '.join(diff[:5])}{' …' if len(diff) > 5 else ''})")
    stacked = pd.concat([t.assign(method=n) for n, t in tables.items()])
    ranks = []
    for metric, higher_is_better in RANKED_METRICS.items():
        wide = stacked.pivot_table(index=["case", "region"], columns="method", values=metric,
                                   aggfunc="first")[names]
        values = wide.to_numpy(dtype=float)
        if np.isnan(values).any():
            raise BratsInputError(f"missing {metric} values; every method needs every case and "
                                  "region")
        ranks.append(rankdata(-values if higher_is_better else values, method="min", axis=1))
    return pd.Series(np.concatenate(ranks).mean(axis=0), index=names, name="rank_score")


def leaderboard(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per method: mean Dice and HD95 per region and the ranking score, best first.

    Args:
        tables: method name → long metrics table (``case, region, dice, hd95, …``).

    Returns:
        DataFrame indexed by method with columns ``Dice_WT … HD95_ET, rank_score,
        rank_score_normalised``, sorted by ``rank_score``.
    """
    if not tables:
        raise BratsInputError("no metrics tables given")
    rows = {}
    for name, table in tables.items():
        means = table.groupby("region")[["dice", "hd95"]].mean()
        rows[name] = {f"{label}_{region}": float(means.loc[region, metric])
                      for label, metric in (("Dice", "dice"), ("HD95", "hd95"))
                      for region in REGION_ORDER if region in means.index}
    board = pd.DataFrame.from_dict(rows, orient="index")
    board["rank_score"] = rank_scores(tables)
    board["rank_score_normalised"] = board["rank_score"] / len(tables)
    board.index.name = "method"
    return board.sort_values("rank_score", kind="stable")


def to_markdown(board: pd.DataFrame, digits: int = 3) -> str:
    """The leaderboard as a GitHub Markdown table."""
    header = [board.index.name or "", *board.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in board.iterrows():
        lines.append("| " + " | ".join([str(name), *(f"{v:.{digits}f}" for v in row)]) + " |")
    return "\n".join(lines) + "\n"


def plot_leaderboard(tables: dict[str, pd.DataFrame]) -> plt.Figure:
    """2×3 box plots: Dice (top) and HD95 in mm (bottom) per region, one box per method."""
    fig, axes = plt.subplots(2, 3, figsize=(4 + 1.3 * 3 * len(tables), 7), squeeze=False)
    names = list(tables)
    for col, region in enumerate(REGION_ORDER):
        for row, (metric, label) in enumerate((("dice", "Dice"), ("hd95", "HD95 [mm]"))):
            ax = axes[row, col]
            data = [t.loc[t["region"] == region, metric].to_numpy() for t in tables.values()]
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
            ax.set_title(f"{region} {label}")
            if metric == "dice":
                ax.set_ylim(-0.02, 1.02)
            ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
