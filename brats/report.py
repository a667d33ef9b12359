"""``brats compare``: compare runs on one dataset as a paper would, and write one report.

A *run* is any folder with per-case scores of one method: a ``brats reproduce`` output
(``cv_metrics.csv``, ``cv_predictions/``, ``runs/<member>/fold<k>/log.csv``), a ``brats predict``
or ``brats ensemble`` output folder (its ``metrics.csv`` or ``cv_metrics.csv`` when there is one,
otherwise its predictions are scored against the dataset here), or a metrics CSV itself. The
dataset is the folder the runs were scored on; it gives each case's grade (2017–2019 layouts) and
the images for the slice overlays.

:func:`compare` computes every table; :func:`comparison_figures` draws the figures;
:func:`write_report` writes both (Markdown, CSV, PNG and one self-contained HTML page) into a
folder with a ``manifest.json``. ``notebooks/compare_methods.ipynb`` shows the same objects.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from matplotlib.ticker import MaxNLocator
from tqdm.auto import tqdm

from brats.compare import (
    find_runs,
    per_case_scores,
    pick_cases,
    plot_overlays,
    plot_pairwise_scatter,
    plot_region_boxplots,
)
from brats.data.case import Case
from brats.data.layouts import discover
from brats.data.releases import get_release
from brats.entries import entry_configs
from brats.errors import BratsInputError
from brats.evaluation import default_convention, evaluate_folder
from brats.io import atomic_path, write_text
from brats.leaderboard import REGION_ORDER, leaderboard, read_metrics
from brats.manifest import prepare_outputs, read_manifest
from brats.metrics import case_metrics
from brats.stats import N_BOOT, mean_ci, paired_tests, rank_stability, shared_cases
from brats.submission import submission_name

#: Metrics tables looked for in a run folder, in this order.
METRICS_FILES = ("cv_metrics.csv", "metrics.csv")
#: Where a ``brats reproduce`` folder keeps its cross-validation predictions and trained runs.
CV_PREDICTIONS = "cv_predictions"
RUNS_DIR = "runs"
#: What the report folder holds besides ``manifest.json``.
REPORT_OUTPUTS = ("report.md", "report.html", "tables", "figures")
VOLUME_TERCILES = ("small", "medium", "large")


@dataclass(frozen=True)
class Run:
    """One method's scores: ``kind`` is the kind of its folder's manifest (``reproduce``,
    ``predict``, ``ensemble``), ``folder`` without one, ``metrics`` for a CSV; ``metrics`` the
    long table (``case, region, dice, hd95, …``); ``predictions`` the folder of its label files
    (None when unknown); ``entry`` the entry config it reproduces (None when not one of
    ``submissions/``)."""

    name: str
    path: Path
    kind: str
    metrics: pd.DataFrame
    predictions: Path | None = None
    entry: str | None = None
    manifest: dict[str, Any] | None = field(default=None, repr=False)


def _has_niftis(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.nii.gz"))


def load_run(path: str | os.PathLike[str], data: str | os.PathLike[str] | None = None,
             name: str | None = None, progress: bool = True) -> Run:
    """Read one run (module docstring); a folder with predictions but no metrics table is
    scored against ``data`` with :func:`brats.evaluation.evaluate_folder`.

    Raises:
        BratsInputError: the path is missing, or holds neither a metrics table nor predictions
            (or predictions but no ``data`` to score them on).
    """
    p = Path(path)
    if p.is_file():
        return Run(name or p.stem, p, "metrics", read_metrics(p))
    if not p.is_dir():
        raise BratsInputError(f"{p}: run folder or metrics file not found")
    manifest = read_manifest(p)
    kind = manifest["kind"] if manifest else "folder"
    predictions = p / CV_PREDICTIONS if (p / CV_PREDICTIONS).is_dir() else p
    predictions = predictions if _has_niftis(predictions) else None
    found = [p / f for f in METRICS_FILES if (p / f).is_file()]
    if found:
        metrics = read_metrics(found[0])
    elif predictions is not None and data is not None:
        metrics = read_metrics_frame(evaluate_folder(predictions, data, progress=progress), p)
    else:
        raise BratsInputError(f"{p}: no {' or '.join(METRICS_FILES)}" + (
            "" if predictions is None else " (pass the dataset to score its predictions)"))
    entry = (manifest or {}).get("settings", {}).get("entry") if kind == "reproduce" else None
    entry = entry or (p.name if p.name in entry_configs() else None)
    return Run(name or p.name, p, kind, metrics, predictions, entry, manifest)


def read_metrics_frame(table: pd.DataFrame, source: Path) -> pd.DataFrame:
    """The WT/TC/ET rows of a metrics table computed here (as :func:`read_metrics` keeps)."""
    if not {"case", "region", "dice", "hd95"} <= set(table.columns):
        raise BratsInputError(f"{source}: scores lack case, region, dice or hd95")
    return table[table["region"].isin(REGION_ORDER)].reset_index(drop=True)


def parse_run_args(items: list[str]) -> dict[str, Path]:
    """``[NAME=]PATH`` arguments → name → path; the name defaults to the folder name (a CSV's
    stem).

    Raises:
        BratsInputError: no runs, or two runs with one name.
    """
    if not items:
        raise BratsInputError("give at least one run folder or metrics file")
    runs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or Path(item).exists():
            name, path = "", item
        target = Path(path)
        name = name or (target.stem if target.suffix == ".csv" else target.resolve().name)
        if name in runs:
            raise BratsInputError(f"two runs are named {name!r}; name them with NAME=PATH")
        runs[name] = target
    return runs


def load_runs(paths: dict[str, Path], data: str | os.PathLike[str] | None = None,
              progress: bool = True) -> dict[str, Run]:
    """Name → :class:`Run` for every ``paths`` entry (:func:`load_run`)."""
    if not paths:
        raise BratsInputError("no runs given")
    return {name: load_run(p, data, name, progress) for name, p in paths.items()}


def notebook_inputs(folder: str | os.PathLike[str] = ".") -> tuple[dict[str, Path], Path | None]:
    """The runs and dataset a notebook compares, from the first source that names them:

    1. ``BRATS_COMPARE_RUNS`` (``[NAME=]PATH`` items separated by ``os.pathsep``) and
       ``BRATS_COMPARE_DATA``;
    2. ``compare.yaml`` in ``folder``: ``{runs: {name: path} | [path, …], data: path,
       validation: path}`` (``validation`` for the data notebook), relative paths taken from
       ``folder``;
    3. the demo: every run in ``BRATS_DEMO_DIR`` (default ``../demo_output``) and its
       ``data/Brats17TrainingData``.

    Raises:
        BratsInputError: a bad ``compare.yaml``, or no runs found.
    """
    env_runs = os.environ.get("BRATS_COMPARE_RUNS")
    if env_runs:
        data = os.environ.get("BRATS_COMPARE_DATA")
        return (parse_run_args([i for i in env_runs.split(os.pathsep) if i]),
                Path(data) if data else None)
    config = Path(folder) / "compare.yaml"
    if config.is_file():
        return _yaml_inputs(config)
    demo = Path(os.environ.get("BRATS_DEMO_DIR", Path(folder) / ".." / "demo_output"))
    return find_runs(demo), demo / "data" / "Brats17TrainingData"


def notebook_datasets(folder: str | os.PathLike[str] = ".") -> tuple[Path, Path | None]:
    """The training and validation folders ``notebooks/explore_data.ipynb`` shows:
    ``BRATS_COMPARE_DATA`` and ``BRATS_VALIDATION_DATA``, else ``data`` and ``validation`` of
    ``compare.yaml`` in ``folder``, else the demo's ``data/Brats17TrainingData`` and
    ``data/Brats17ValidationData`` (``BRATS_DEMO_DIR``, default ``../demo_output``)."""
    data = os.environ.get("BRATS_COMPARE_DATA")
    if data:
        validation = os.environ.get("BRATS_VALIDATION_DATA")
        return Path(data), Path(validation) if validation else None
    config = Path(folder) / "compare.yaml"
    if config.is_file():
        spec = _read_spec(config)
        if spec.get("data") is None:
            raise BratsInputError(f"{config}: no data folder given")
        validation = spec.get("validation")
        return (config.parent / str(spec["data"]),
                None if validation is None else config.parent / str(validation))
    demo = Path(os.environ.get("BRATS_DEMO_DIR", Path(folder) / ".." / "demo_output")) / "data"
    return demo / "Brats17TrainingData", demo / "Brats17ValidationData"


def _read_spec(config: Path) -> dict[str, Any]:
    """``compare.yaml``: keys ``runs``, ``data`` and ``validation`` only."""
    spec = yaml.safe_load(config.read_text()) or {}
    unknown = (set(spec) - {"runs", "data", "validation"} if isinstance(spec, dict)
               else {"(not a mapping)"})
    if unknown:
        raise BratsInputError(f"{config}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                              "expected runs, data and validation")
    return spec


def _yaml_inputs(config: Path) -> tuple[dict[str, Path], Path | None]:
    spec = _read_spec(config)
    runs = spec.get("runs")
    base = config.parent
    if isinstance(runs, dict):
        items = [f"{k}={base / str(v)}" for k, v in runs.items()]
    elif isinstance(runs, list):
        items = [str(base / str(v)) for v in runs]
    else:
        raise BratsInputError(f"{config}: runs must be a list of paths or a name → path mapping")
    data = spec.get("data")
    return parse_run_args(items), None if data is None else base / str(data)


def reported_numbers(entry: str) -> tuple[str, str, dict[str, dict[str, dict[str, float]]]]:
    """``(release, source, {split: {metric: {region: value}}})`` from
    ``submissions/<entry>.yaml`` (its ``release`` and ``reported:`` keys; ``reported.source``
    says where the numbers come from and whether they are confirmed).

    Raises:
        BratsInputError: unknown entry or a malformed ``reported:`` block.
    """
    configs = entry_configs()
    if entry not in configs:
        raise BratsInputError(f"unknown entry {entry!r}; known: {', '.join(configs)}")
    raw = yaml.safe_load(configs[entry].read_text()) or {}
    reported = dict(raw.get("reported") or {})
    source = str(reported.pop("source", "UNCONFIRMED (no source given)"))
    for split, metrics in reported.items():
        if not isinstance(metrics, dict) or not all(
                isinstance(v, dict) and set(v) <= set(REGION_ORDER) for v in metrics.values()):
            raise BratsInputError(f"{configs[entry]}: reported.{split} must map metric → "
                                  f"{{region: value}}")
    return str(raw.get("release", "2017")), source, reported


def reported_vs_reproduced(runs: dict[str, Run], means: pd.DataFrame, data: Path | None
                           ) -> pd.DataFrame:
    """The reproduced mean and interval (from :func:`brats.stats.mean_ci`) beside each
    published number of the run's entry, with the difference (reproduced − published).

    Returns:
        Columns ``method, entry, metric, region, reproduced, ci_low, ci_high, n, published,
        difference, published_on, published_source, reproduced_on``; empty when no run
        reproduces an entry.
    """
    rows = []
    for name, run in runs.items():
        if run.entry is None:
            continue
        release, source, reported = reported_numbers(run.entry)
        where = ("cross-validation" if run.kind == "reproduce" or run.predictions is not None
                 and run.predictions.name == CV_PREDICTIONS else f"predictions in {run.path}")
        if data is not None:
            where += f" on {data}"
        for split, metrics in reported.items():
            for metric, regions in metrics.items():
                for region in (r for r in REGION_ORDER if r in regions):
                    value = regions[region]
                    mine = means[(means["method"] == name) & (means["metric"] == metric)
                                 & (means["region"] == region)]
                    if mine.empty:
                        continue
                    row = mine.iloc[0]
                    rows.append({"method": name, "entry": run.entry, "metric": metric,
                                 "region": region, "reproduced": row["mean"],
                                 "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                                 "n": row["n"], "published": float(value),
                                 "difference": row["mean"] - float(value),
                                 "published_on": f"BraTS {release} {split} set",
                                 "published_source": source,
                                 "reproduced_on": f"{where} ({row['n']} cases)"})
    return pd.DataFrame(rows, columns=["method", "entry", "metric", "region", "reproduced",
                                       "ci_low", "ci_high", "n", "published", "difference",
                                       "published_on", "published_source", "reproduced_on"])


def case_grades(data: str | os.PathLike[str]) -> pd.Series:
    """Case id → ``"HGG"``/``"LGG"`` for the cases whose layout tells (2017–2019 training folders
    keep them under ``HGG/`` and ``LGG/``, :mod:`brats.data.layouts`); empty otherwise."""
    grades = {c.id: c.grade for c in discover(data) if c.grade is not None}
    return pd.Series(grades, name="grade", dtype=object)


def volume_terciles(tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Case id → ``small``/``medium``/``large``: terciles of the reference WT volume (the
    ``volume_ref`` column, mm³) of the first table; empty without that column or 3 cases."""
    first = next(iter(tables.values()))
    if "volume_ref" not in first.columns:
        return pd.Series(dtype=object, name="volume")
    volumes = first[first["region"] == "WT"].groupby("case")["volume_ref"].first()
    if len(volumes) < 3:
        return pd.Series(dtype=object, name="volume")
    groups = pd.qcut(volumes.rank(method="first"), 3, labels=list(VOLUME_TERCILES))
    return groups.astype(str).rename("volume")


def breakdown(tables: dict[str, pd.DataFrame], groups: pd.Series, metric: str = "dice"
              ) -> pd.DataFrame:
    """Mean ``metric`` per group of cases, method and region.

    Returns:
        Index ``(group, method)``; columns ``n`` (cases of the group) and WT, TC, ET.
    """
    rows = []
    for group in pd.unique(groups.to_numpy()):
        ids = set(groups.index[groups == group])
        for name, table in tables.items():
            rows_of = table[table["case"].isin(ids)]
            means = rows_of.groupby("region")[metric].mean()
            rows.append({"group": group, "method": name, "n": rows_of["case"].nunique(),
                         **{r: float(means.get(r, np.nan)) for r in REGION_ORDER}})
    out = pd.DataFrame(rows, columns=["group", "method", "n", *REGION_ORDER])
    return out.sort_values(["group", "method"], kind="stable").set_index(["group", "method"])


def disagreements(tables: dict[str, pd.DataFrame], metric: str = "dice", top: int = 10
                  ) -> pd.DataFrame:
    """The case × region pairs on which the methods' ``metric`` spreads most (max − min).

    Returns:
        Up to ``top`` rows, largest spread first (ties by case, then WT, TC, ET): ``case, region,
        spread``
        and one column per method.
    """
    rows = []
    for region in REGION_ORDER:
        wide = pd.DataFrame({n: t[t["region"] == region].groupby("case")[metric].first()
                             for n, t in tables.items()})
        spread = wide.max(axis=1) - wide.min(axis=1)
        for case in wide.index:
            rows.append({"case": case, "region": region, "spread": float(spread[case]),
                         **wide.loc[case].to_dict()})
    out = pd.DataFrame(rows, columns=["case", "region", "spread", *tables])
    out = out.dropna(subset=["spread"]).sort_values("case", kind="stable").sort_values(
        "spread", ascending=False, kind="stable")
    return out.head(top).reset_index(drop=True)


def per_case_dice(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """(cases, methods × regions) Dice, columns named ``<method> <region>``."""
    wide = per_case_scores(tables, "dice")
    wide.columns = [f"{method} {region}" for method, region in wide.columns]
    return wide


def training_logs(run: Run) -> dict[str, pd.DataFrame]:
    """``member/fold<k>`` → that training run's ``log.csv`` (columns ``epoch, lr, train_loss,
    val_loss, dice_WT, dice_TC, dice_ET, …``), for a ``brats reproduce`` folder's ``runs/``."""
    root = run.path / RUNS_DIR
    if not root.is_dir():
        return {}
    return {f"{log.parent.parent.name}/{log.parent.name}": pd.read_csv(log)
            for log in sorted(root.glob("*/*/log.csv"))}


def plot_training_curves(logs: dict[str, pd.DataFrame], title: str) -> plt.Figure:
    """1×3 panels over epochs: loss (training solid, validation dashed), mean validation
    pseudo-Dice over WT, TC, ET, and learning rate (log scale); one colour per member, one line
    per member and fold."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), squeeze=False)
    members = sorted({key.split("/")[0] for key in logs})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(members)}
    for key, log in logs.items():
        colour = colours[key.split("/")[0]]
        epochs = log["epoch"] + 1
        axes[0, 0].plot(epochs, log["train_loss"], color=colour, label=key)
        axes[0, 0].plot(epochs, log["val_loss"], color=colour, ls="--")
        dice = log[[f"dice_{r}" for r in REGION_ORDER if f"dice_{r}" in log]].mean(axis=1)
        axes[0, 1].plot(epochs, dice, color=colour, label=key)
        axes[0, 2].plot(epochs, log["lr"], color=colour, label=key)
    for ax, label in zip(axes[0], ("loss (training —, validation --)",
                                   "validation pseudo-Dice (mean WT, TC, ET)", "learning rate")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    if any((log["lr"] > 0).all() for log in logs.values()):
        axes[0, 2].set_yscale("log")
    axes[0, 2].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _score_maps(folder: Path, cases: list[Case], progress: bool) -> pd.DataFrame:
    """Score a folder of probability maps (argmax, pasted back) against the cases' labels, with
    the metric convention ``brats evaluate`` uses for their release."""
    from brats.inference.combine import load_probabilities, probabilities_to_labels
    from brats.inference.fusion import probability_files
    from brats.preprocess.crop import paste_back

    files = probability_files(folder)
    rows = []
    for case in tqdm(cases, desc=f"score {folder.name}", unit="case", disable=not progress):
        if case.id not in files:
            raise BratsInputError(f"{folder}: no probability map for {case.id}")
        probs, meta = load_probabilities(files[case.id])
        labels = paste_back(probabilities_to_labels(probs), [tuple(b) for b in meta["box"]],
                            meta["shape"])
        data = case.load()
        convention = default_convention(get_release(case.release).convention)
        rows += [{"case": case.id, **row} for row in case_metrics(
            labels, data.labels, spacing=data.spacing, convention=convention)]
    return pd.DataFrame(rows)


def member_tables(run: Run, data: str | os.PathLike[str], progress: bool = True
                  ) -> dict[str, pd.DataFrame]:
    """For a ``brats ensemble`` output or a ``brats reproduce`` of several members (``mean``
    rule): each member's scores on ``data``, then the fused ones.

    A run source was predicted into the ensemble's work folder (``<work>/<source>/predictions``,
    :mod:`brats.inference.fusion`) and those label files are scored; a source of probability maps
    is turned into labels (argmax, pasted back) and scored with :func:`brats.metrics.case_metrics`.
    A reproduction's members are its own cross-validation predictions
    (``cv_members/<member>/``, :data:`brats.reproduce.CV_MEMBERS`). Other runs give an empty dict.

    Returns:
        Member name → metrics table, ending with ``"ensemble"`` → the run's own table.
    """
    from brats.inference.fusion import is_run_source, source_names
    from brats.reproduce import CV_MEMBERS

    if run.kind == "reproduce" and (run.path / CV_MEMBERS).is_dir():
        folders = sorted(p for p in (run.path / CV_MEMBERS).iterdir() if _has_niftis(p))
        members = {p.name: read_metrics_frame(evaluate_folder(p, data, progress=progress), p)
                   for p in folders}
        return {**members, "ensemble": run.metrics} if members else {}
    if run.kind != "ensemble" or run.manifest is None:
        return {}
    sources = [Path(s) for s in run.manifest.get("sources", [])]
    work = Path(run.manifest.get("work", ""))
    cases = [c for c in discover(data) if c.id in set(run.metrics["case"])]
    out: dict[str, pd.DataFrame] = {}
    for name, source in zip(source_names(sources), sources):
        predictions = work / name / "predictions"
        if is_run_source(source):
            if not _has_niftis(predictions):
                raise BratsInputError(f"{run.path}: the predictions of source {source} are not in "
                                      f"{predictions}; cannot score that member")
            table = evaluate_folder(predictions, data, progress=progress)
        elif source.is_dir():
            table = _score_maps(source, cases, progress)
        else:
            raise BratsInputError(f"{run.path}: source {source} is gone; cannot score it")
        out[name] = read_metrics_frame(table, source)
    out["ensemble"] = run.metrics
    return out


def member_summary(members: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean Dice and HD95 per region of each member and the fused result (one row each)."""
    return leaderboard(shared_cases(members)).drop(columns=["rank_score_normalised"]).reindex(
        list(members)) if len(members) > 1 else pd.DataFrame()


@dataclass
class Comparison:
    """Everything :func:`compare` computed; tables are pandas DataFrames (HD95 in mm)."""

    runs: dict[str, Run]
    data: Path | None
    tables: dict[str, pd.DataFrame]
    leaderboard: pd.DataFrame
    means: pd.DataFrame
    tests: pd.DataFrame
    ranking: pd.DataFrame
    reported: pd.DataFrame
    by_grade: pd.DataFrame
    by_volume: pd.DataFrame
    disagreements: pd.DataFrame
    per_case: pd.DataFrame
    members: dict[str, dict[str, pd.DataFrame]]
    n_boot: int
    seed: int
    notes: list[str]

    def named_tables(self) -> dict[str, pd.DataFrame]:
        """File stem → table, in report order (empty tables left out)."""
        tables = {"leaderboard": self.leaderboard, "ranking": self.ranking,
                  "mean_ci": self.means, "wilcoxon_holm": self.tests,
                  "reported_vs_reproduced": self.reported, "by_grade": self.by_grade,
                  "by_volume": self.by_volume, "disagreements": self.disagreements,
                  "per_case_dice": self.per_case}
        tables |= {f"members_{name}": member_summary(m) for name, m in self.members.items()}
        return {k: v for k, v in tables.items() if not v.empty}


def compare(runs: dict[str, Run], data: str | os.PathLike[str] | None = None,
            n_boot: int = N_BOOT, seed: int = 0, progress: bool = True) -> Comparison:
    """All tables of a comparison on the cases every run scored (see the module docstring).

    Raises:
        BratsInputError: no runs, or runs that share no case.
    """
    if not runs:
        raise BratsInputError("no runs given")
    data = None if data is None else Path(data)
    if data is not None and not data.is_dir():
        raise BratsInputError(f"{data}: dataset folder not found")
    tables = shared_cases({name: run.metrics for name, run in runs.items()})
    notes = []
    dropped = {n: run.metrics["case"].nunique() - t["case"].nunique()
               for (n, run), t in zip(runs.items(), tables.values())}
    if any(dropped.values()):
        notes.append("cases not scored by every run are left out: " + ", ".join(
            f"{n} −{k}" for n, k in dropped.items() if k))
    for name, run in runs.items():
        scored_on = (run.manifest or {}).get("settings", {}).get("data")
        if data is not None and run.kind == "reproduce" and scored_on != str(data.resolve()):
            notes.append(f"{name} was cross-validated on {scored_on}, not on {data}")
    means = mean_ci(tables, n_boot=n_boot, seed=seed)
    several = len(tables) > 1
    grades = case_grades(data) if data is not None else pd.Series(dtype=object)
    if grades.empty:
        notes.append("no HGG/LGG breakdown: the dataset's layout does not give the grade")
    members = {name: member_tables(run, data, progress) for name, run in runs.items()
               if data is not None and run.kind in ("ensemble", "reproduce")}
    members = {name: tables_ for name, tables_ in members.items() if tables_}
    return Comparison(
        runs=runs, data=data, tables=tables, leaderboard=leaderboard(tables), means=means,
        tests=paired_tests(tables) if several else pd.DataFrame(),
        ranking=rank_stability(tables, n_boot, seed), reported=reported_vs_reproduced(
            runs, means, data),
        by_grade=breakdown(tables, grades) if not grades.empty else pd.DataFrame(),
        by_volume=breakdown(tables, volume_terciles(tables)),
        disagreements=disagreements(tables) if several else pd.DataFrame(),
        per_case=per_case_dice(tables),
        members={k: v for k, v in members.items() if v}, n_boot=n_boot, seed=seed, notes=notes)


def overlay_figures(comparison: Comparison) -> dict[str, plt.Figure]:
    """Best, median and worst case (WT Dice of the first run) with every run's prediction; empty
    without a dataset or without predictions."""
    runs = {n: r for n, r in comparison.runs.items() if r.predictions is not None}
    if comparison.data is None or not runs:
        return {}
    first = next(iter(comparison.tables))
    cases = {c.id: c for c in discover(comparison.data)}
    figures = {}
    for kind, case_id in pick_cases(comparison.tables, first, "WT", "dice").items():
        paths = {n: r.predictions / submission_name(case_id) for n, r in runs.items()}
        paths = {n: p for n, p in paths.items() if p.is_file()}
        if case_id in cases and paths:
            figures[f"overlay_{kind}"] = plot_overlays(
                cases[case_id], paths, title=f"{kind} WT Dice of {first}: {case_id}")
    return figures


def comparison_figures(comparison: Comparison) -> dict[str, plt.Figure]:
    """File stem → figure: box plots (Dice, HD95), the first two runs case by case, each
    reproduced entry's training curves, members beside the fused result, and the overlays."""
    figures = {f"boxplot_{m}": plot_region_boxplots(comparison.tables, m) for m in ("dice", "hd95")}
    names = list(comparison.tables)
    if len(names) > 1:
        figures["scatter_dice"] = plot_pairwise_scatter(comparison.tables, names[0], names[1])
    for name, run in comparison.runs.items():
        logs = training_logs(run)
        if logs:
            figures[f"training_{name}"] = plot_training_curves(logs, f"{name}: training curves")
    for name, members in comparison.members.items():
        fig = plot_region_boxplots(shared_cases(members), "dice")
        fig.suptitle(f"{name}: members and the fused result")
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        figures[f"members_{name}"] = fig
    return figures | overlay_figures(comparison)


def _format(value: Any, digits: int) -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame (its index included when named) as a GitHub Markdown table."""
    frame = table.reset_index() if any(table.index.names) else table
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    lines += ["| " + " | ".join(_format(v, digits) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


SECTIONS = {
    "leaderboard": "Mean Dice and HD95 (mm) per region on the shared cases, and the BraTS ranking "
                   "score (mean rank over cases, regions and metrics; lower is better).",
    "ranking": "Rank stability: share of bootstrap resamples of the cases in which each method "
               "keeps its place (``stability``) or comes first (``p_first``).",
    "mean_ci": "Means with percentile-bootstrap 95 % confidence intervals.",
    "wilcoxon_holm": "Paired two-sided Wilcoxon signed-rank tests between every pair of methods "
                     "on the shared cases; ``p_holm``: Holm-adjusted within each metric and "
                     "region.",
    "reported_vs_reproduced": "Reproduced mean (95 % CI) beside the published number of the "
                              "entry (submissions/<entry>.yaml, ``reported:``) and the set it "
                              "was measured on.",
    "by_grade": "Mean Dice per grade (HGG/LGG).",
    "by_volume": "Mean Dice per tercile of the reference whole-tumour volume.",
    "disagreements": "Cases and regions where the methods' Dice spreads most.",
    "per_case_dice": "Every method's Dice per case and region.",
}


def _section_text(name: str) -> str:
    if name.startswith("members_"):
        return (f"Each member of {name[len('members_'):]} scored on its own beside the fused "
                "result.")
    return SECTIONS[name]


def _png(fig: plt.Figure) -> bytes:
    """The figure as PNG bytes (110 dpi, as :func:`brats.viz.save_figure`); closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def report_settings(comparison: Comparison) -> dict[str, Any]:
    """What a report depends on: each run's path and a hash of its scores, the dataset, and
    the bootstrap settings."""
    runs = {name: {"path": str(run.path.resolve()), "scores_sha256": hashlib.sha256(
        run.metrics.to_csv(index=False).encode()).hexdigest()}
        for name, run in comparison.runs.items()}
    return {"runs": runs, "data": None if comparison.data is None else
            str(comparison.data.resolve()), "n_boot": comparison.n_boot, "seed": comparison.seed}


def write_report(comparison: Comparison, out: str | os.PathLike[str], overwrite: bool = False
                 ) -> Path:
    """Write ``report.md``, ``report.html`` (figures embedded as base64 PNG),
    ``tables/<name>.csv`` and ``figures/<name>.png`` into ``out`` with a ``manifest.json``
    (kind ``compare``, :func:`report_settings`). Re-running with the same inputs rewrites the
    report; other inputs need ``overwrite``.

    Returns:
        The path of ``report.html``.

    Raises:
        BratsInputError: ``out`` holds a report of other inputs (without ``overwrite``) or files
            brats did not write.
    """
    folder = Path(out)
    prepare_outputs({folder: REPORT_OUTPUTS}, "compare", report_settings(comparison),
                    resume=True, overwrite=overwrite)
    (folder / "tables").mkdir(exist_ok=True)
    (folder / "figures").mkdir(exist_ok=True)
    title = f"Comparison of {', '.join(comparison.runs)}"
    data = comparison.data or "(no dataset given)"
    intro = (f"Runs: {', '.join(f'{n} ({r.path})' for n, r in comparison.runs.items())}. "
             f"Dataset: {data}. {next(iter(comparison.tables.values()))['case'].nunique()} shared "
             f"case(s); bootstrap {comparison.n_boot} resamples, seed {comparison.seed}.")
    md = [f"# {title}\n", intro + "\n", *(f"- {note}" for note in comparison.notes), ""]
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    body += [f"<p><em>{html.escape(note)}</em></p>" for note in comparison.notes]
    for name, table in comparison.named_tables().items():
        write_text(table.to_csv(), folder / "tables" / f"{name}.csv")
        md += [f"## {name}\n", _section_text(name) + "\n", markdown_table(table)]
        body += [f"<h2>{name}</h2>", f"<p>{html.escape(_section_text(name))}</p>",
                 table.to_html(float_format=lambda v: f"{v:.3f}", na_rep="", border=0)]
    md.append("## figures\n")
    body.append("<h2>figures</h2>")
    for name, fig in comparison_figures(comparison).items():
        png = _png(fig)
        with atomic_path(folder / "figures" / f"{name}.png") as tmp:
            tmp.write_bytes(png)
        md.append(f"![{name}](figures/{name}.png)\n")
        body.append(f"<h3>{name}</h3><img alt='{name}' src='data:image/png;base64,"
                    f"{base64.b64encode(png).decode()}'>")
    write_text("\n".join(md), folder / "report.md")
    style = ("body{font-family:sans-serif;max-width:1400px;margin:auto}table{border-collapse:"
             "collapse;font-size:12px}td,th{padding:2px 6px;border-bottom:1px solid #ddd}"
             "img{max-width:100%}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    write_text(page, folder / "report.html")
    return folder / "report.html"

