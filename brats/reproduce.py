"""``brats reproduce ENTRY``: prepare → train every fold of every member → cross-validation
predictions and metrics → validation submission → the entry's leaderboard row.

Every step skips what is already done, so re-running the same command resumes.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from brats.config import load_config
from brats.errors import BratsInputError
from brats.evaluation import evaluate_folder
from brats.inference.predictor import predict_folder
from brats.io import write_text
from brats.leaderboard import REGION_ORDER, to_markdown
from brats.preprocess.cache import prepare_dataset
from brats.submission import require_valid_submission, zip_submission
from brats.training.splits import load_or_make_splits
from brats.training.trainer import Trainer, training_cases

SUBMISSIONS_DIR = Path(__file__).resolve().parents[1] / "submissions"


def resolve_entry(entry: str) -> Path:
    """A config path, or the name of a config in the repository's ``submissions/`` folder."""
    path = Path(entry)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise BratsInputError(f"{path}: config file not found")
        return path
    candidate = SUBMISSIONS_DIR / f"{entry}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in SUBMISSIONS_DIR.glob("*.yaml"))
        raise BratsInputError(f"unknown entry {entry!r}; known: {', '.join(known) or 'none'} "
                              f"(or pass a .yaml path)")
    return candidate


def leaderboard_row(metrics: pd.DataFrame, name: str) -> pd.DataFrame:
    """Mean Dice and HD95 per region of one metrics table, as a one-row leaderboard."""
    means = metrics.groupby("region")[["dice", "hd95"]].mean()
    row = {f"{label}_{r}": float(means.loc[r, col]) for label, col in (("Dice", "dice"),
                                                                      ("HD95", "hd95"))
           for r in REGION_ORDER}
    return pd.DataFrame([row], index=pd.Index([name], name="method"))


def reproduce(entry: str, data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
              validation_dir: str | os.PathLike[str] | None = None, profile: str | None = None,
              overrides: dict[str, Any] | None = None, device: str | None = None, jobs: int = 1,
              progress: bool = True) -> dict[str, Any]:
    """Run the whole reproduction of one entry; see the module docstring.

    Returns:
        ``{"config", "metrics" (DataFrame), "row" (DataFrame), "submission" (Path or None)}``.
    """
    config = load_config(resolve_entry(entry), profile, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    print(f"[{config.entry}] prepare {data_dir} → {cache}")
    records = prepare_dataset(data_dir, cache, jobs=jobs, progress=progress)
    release = records[0].release
    cases = training_cases(cache)
    splits = load_or_make_splits(
        cache / f"splits_{config.train.folds}fold_seed{config.train.split_seed}.json", cases,
        config.train.folds, config.train.split_seed)
    runs = out / "runs"
    for fold in range(config.train.folds):
        for name in config.member_names:
            print(f"[{config.entry}] train member {name}, fold {fold + 1}/{config.train.folds}")
            member = config.member(name)
            if member.train.init_from in config.member_names:
                member = replace(member, train=replace(
                    member.train, init_from=str(runs / member.train.init_from / f"fold{fold}")))
            Trainer(member, cache, runs / name / f"fold{fold}", fold=fold, device=device,
                    resume=True, progress=progress, member=name).fit()
    cv_dir = out / "cv_predictions"
    for fold, split in enumerate(splits):
        print(f"[{config.entry}] cross-validation predictions, fold {fold + 1}")
        predict_folder([runs / name / f"fold{fold}" for name in config.member_names], data_dir,
                       cv_dir, release=release, device=device, cases=split["val"],
                       progress=progress)
    metrics = evaluate_folder(cv_dir, data_dir, release=release, jobs=jobs, progress=progress)
    write_text(metrics.to_csv(index=False), out / "cv_metrics.csv")
    submission = None
    if validation_dir is not None:
        sub_dir = out / "submission"
        print(f"[{config.entry}] predict {validation_dir} with all folds → {sub_dir}")
        predict_folder([runs], validation_dir, sub_dir, device=device,
                       probabilities_dir=out / "probabilities", progress=progress)
        require_valid_submission(sub_dir, validation_dir, progress=progress)
        zip_path = out / "submission.zip"
        submission = zip_submission(sub_dir, zip_path, overwrite=True)
    row = leaderboard_row(metrics, config.entry)
    write_text(to_markdown(row), out / "leaderboard_row.md")
    print(f"[{config.entry}] cross-validation on {metrics['case'].nunique()} case(s):")
    print(to_markdown(row), end="")
    return {"config": config, "metrics": metrics, "row": row, "submission": submission}

