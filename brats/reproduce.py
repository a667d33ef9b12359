"""``brats reproduce ENTRY``: prepare → train every fold of every member → cross-validation
predictions and metrics → validation submission → the entry's leaderboard row.

The submission comes from the fold models (``submission_models: folds``) or, for entries whose
authors trained their final models on every training case (``submission_models: all``), from
one more run per member on every case (``runs/<member>/all``).

After the cross-validation metrics, the post-processing of :mod:`brats.postprocess` is tuned on
them (``postprocessing.json``) and scored as a second leaderboard row ``<entry>+pp``
(``cv_predictions_pp/``, ``cv_metrics_pp.csv``); the submission stays as predicted unless
``postprocess="tuned"`` (``--postprocess tuned``), which adds ``submission_pp/`` and
``submission_pp.zip`` beside the plain one.

The output folder's ``manifest.json`` records the settings. Every step skips what is already
done, so re-running the same command resumes; re-running with other settings is refused unless
``overwrite`` (``--overwrite``), which redoes what the change affects.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from brats.config import EntryConfig, load_config, to_dict
from brats.data.case import Case
from brats.data.layouts import discover
from brats.entries import resolve_entry
from brats.errors import BratsInputError
from brats.evaluation import evaluate_folder
from brats.inference.predictor import (
    CHECKPOINTS,
    member_settings,
    predict_cases,
    predict_folder,
    split_overrides,
)
from brats.io import write_text
from brats.leaderboard import REGION_ORDER, to_markdown
from brats.manifest import (
    diff_settings,
    prepare_outputs,
    read_manifest,
    require_same,
    write_manifest,
)
from brats.postprocess import postprocess_folder, tune_reproduction
from brats.preprocess.cache import prepare_dataset
from brats.submission import require_valid_submission, submission_name, zip_submission
from brats.training.splits import load_or_make_splits
from brats.training.trainer import Trainer, select_device, training_cases


def leaderboard_row(metrics: pd.DataFrame, name: str) -> pd.DataFrame:
    """Mean Dice and HD95 per region of one metrics table, as a one-row leaderboard."""
    means = metrics.groupby("region")[["dice", "hd95"]].mean()
    row = {f"{label}_{r}": float(means.loc[r, col]) for label, col in (("Dice", "dice"),
                                                                      ("HD95", "hd95"))
           for r in REGION_ORDER}
    return pd.DataFrame([row], index=pd.Index([name], name="method"))


#: ``postprocess`` choices: the submission as predicted, or also post-processed by the tuned rule.
POSTPROCESS = ("none", "tuned")

#: Where ``brats reproduce`` keeps each member's own cross-validation predictions (``mean`` rule).
CV_MEMBERS = "cv_members"

#: Which models predict the submission (the entry config's ``submission_models``).
SUBMISSION_MODELS = ("folds", "all")

#: Settings that change speed or logging only: a re-run may change them freely.
SPEED_ONLY = ("data.workers", "train.tensorboard")


def reproduce_settings(config: EntryConfig, checkpoint: str, data_dir: str | os.PathLike[str],
                       validation_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """What a reproduction depends on: each member's resolved config (inference included), the
    checkpoint choice and the datasets."""
    members = {}
    for name in config.member_names:
        resolved = to_dict(config.member(name))
        del resolved["members"]
        members[name] = resolved
    return {"entry": config.entry, "combine": config.combine, "members": members,
            "submission_models": config.submission_models,
            "checkpoint": checkpoint, "data": str(Path(data_dir).resolve()),
            "validation": None if validation_dir is None else str(Path(validation_dir).resolve())}


def _record(out: Path, settings: dict[str, Any], ignore: list[str], overwrite: bool,
            entry: str) -> None:
    """Compare with the manifest of an earlier reproduction in ``out``, then write ours.

    Raises:
        BratsInputError: ``out`` was made by another command, or by other settings without
            ``overwrite``.
    """
    old = read_manifest(out)
    if old is None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BratsInputError(f"{out} exists and was not made by brats reproduce (no "
                              "manifest.json); choose a new or empty --out")
    if old is not None:
        if old["kind"] != "reproduce":
            raise BratsInputError(f"{out} holds the output of `brats {old['kind']}`, not of "
                                  "brats reproduce; choose a new --out")
        if not overwrite:
            require_same(out, "reproduce", settings, ignore)
        diffs = diff_settings(old["settings"], settings, ignore)
        if diffs:
            print(f"[{entry}] settings changed ({'; '.join(diffs)}): redoing what depends on them")
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, "reproduce", settings)


def _run_name(fold: int | None) -> str:
    """A member's run folder name: ``fold<k>``, or ``all`` for the model trained on every case."""
    return "all" if fold is None else f"fold{fold}"


def submission_runs(config: EntryConfig, runs: Path) -> list[Path]:
    """The run folders (under a reproduction's ``runs/``) whose mean predicts new cases: every
    fold model, or each member's model trained on every case (``submission_models``)."""
    folds: list[int | None] = ([None] if config.submission_models == "all"
                               else list(range(config.train.folds)))
    return [runs / name / _run_name(fold) for fold in folds for name in config.member_names]


def _cases(data_dir: str | os.PathLike[str], release: str, ids: list[str]) -> list[Case]:
    wanted = set(ids)
    return [c for c in discover(data_dir, release) if c.id in wanted]


def cross_validate(fold_runs: list[list[Path]], splits: list[dict[str, list[str]]],
                   data_dir: str | os.PathLike[str], release: str, cv_dir: Path,
                   checkpoint: str = "final", overrides: dict[str, Any] | None = None,
                   device: str | None = None, overwrite: bool = False,
                   progress: bool = True, members_dir: Path | None = None) -> None:
    """Predict every fold's validation cases with that fold's runs into one folder.

    ``cv_dir`` gets a manifest (kind ``cross-validation``: every fold's members and cases);
    matching settings resume, other settings are an error unless ``overwrite`` (then the folder
    is cleared of its own predictions and redone). With ``members_dir`` (``mean`` rule) each
    member's own cross-validation prediction also goes to ``members_dir/<member>/``, so that the
    members can be scored beside their mean.
    """
    dev = select_device(device)
    members, paths = member_settings([r for runs in fold_runs for r in runs], checkpoint,
                                     overrides)
    all_ids = [i for split in splits for i in split["val"]]
    settings = {"input": str(Path(data_dir).resolve()), "release": release,
                "checkpoint": checkpoint, "members": members,
                "folds": [split["val"] for split in splits]}
    folders = {cv_dir: [submission_name(i) for i in all_ids]}
    if members_dir is not None:
        folders[members_dir] = sorted({r.parent.name for runs in fold_runs for r in runs})
    prepare_outputs(folders, "cross-validation", settings, resume=True, overwrite=overwrite,
                    runs=paths)
    for fold, (runs, split) in enumerate(zip(fold_runs, splits)):
        print(f"cross-validation predictions, fold {fold + 1}/{len(splits)}")
        predict_cases(runs, _cases(data_dir, release, split["val"]), cv_dir, None, dev,
                      checkpoint, overrides, progress, members_dir=members_dir)


def reproduce(entry: str, data_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
              validation_dir: str | os.PathLike[str] | None = None, profile: str | None = None,
              overrides: dict[str, Any] | None = None, device: str | None = None, jobs: int = 1,
              checkpoint: str = "final", overwrite: bool = False,
              progress: bool = True, postprocess: str = "none") -> dict[str, Any]:
    """Run the whole reproduction of one entry; see the module docstring.

    ``out_dir/manifest.json`` (kind ``reproduce``) records :func:`reproduce_settings`. A re-run
    with the same settings resumes; with other settings it is an error listing the differences,
    unless ``overwrite``: then runs trained with another config start again (or train on to a
    larger ``train.epochs``), and the cross-validation and submission predictions are redone
    when their checkpoints or inference settings changed. ``inference.*`` overrides act at
    prediction time only (the runs keep training with the config file's inference settings).

    Args:
        checkpoint: ``final`` (default, as the entries submitted) or ``best``
            (:func:`brats.inference.predictor.checkpoint_file`).
        postprocess: ``none`` (default) or ``tuned``: also write the submission post-processed
            by the rule tuned on the cross-validation (``submission_pp/``).

    Returns:
        ``{"config", "metrics" (DataFrame), "row" (DataFrame), "submission" (Path or None),
        "postprocessing" (the tuned rule), "metrics_pp", "row_pp", "submission_pp" (Path or
        None)}``.
    """
    path = resolve_entry(entry)
    inference, training = split_overrides(overrides)
    config = load_config(path, profile, overrides)
    if config.submission_models not in SUBMISSION_MODELS:
        raise BratsInputError(f"submission_models {config.submission_models!r}: expected one of "
                              + ", ".join(SUBMISSION_MODELS))
    if checkpoint not in CHECKPOINTS:
        raise BratsInputError(f"checkpoint {checkpoint!r}: expected one of {', '.join(CHECKPOINTS)}")
    if postprocess not in POSTPROCESS:
        raise BratsInputError(f"postprocess {postprocess!r}: expected one of "
                              + ", ".join(POSTPROCESS))
    train_config = load_config(path, profile, training)
    out = Path(out_dir)
    _record(out, reproduce_settings(config, checkpoint, data_dir, validation_dir),
            [f"members.{name}.{key}" for name in config.member_names for key in SPEED_ONLY],
            overwrite, config.entry)
    cache = out / "cache"
    print(f"[{config.entry}] prepare {data_dir} → {cache}")
    records = prepare_dataset(data_dir, cache, jobs=jobs, progress=progress)
    release = records[0].release
    cases = training_cases(cache)
    splits = load_or_make_splits(
        cache / f"splits_{config.train.folds}fold_seed{config.train.split_seed}.json", cases,
        config.train.folds, config.train.split_seed)
    runs = out / "runs"
    folds: list[int | None] = list(range(config.train.folds))
    if validation_dir is not None and config.submission_models == "all":
        folds.append(None)
    for fold in folds:
        for name in config.member_names:
            step = ("on every training case" if fold is None
                    else f"fold {fold + 1}/{config.train.folds}")
            print(f"[{config.entry}] train member {name}, {step}")
            member = train_config.member(name)
            if member.train.init_from in config.member_names:
                member = replace(member, train=replace(
                    member.train, init_from=str(runs / member.train.init_from / _run_name(fold))))
            Trainer(member, cache, runs / name / _run_name(fold), fold=fold, device=device,
                    resume=True, progress=progress, member=name, overwrite=overwrite).fit()
    cv_dir = out / "cv_predictions"
    print(f"[{config.entry}] cross-validation predictions → {cv_dir}")
    members_dir = (out / CV_MEMBERS
                   if config.combine == "mean" and len(config.member_names) > 1 else None)
    cross_validate([[runs / name / f"fold{fold}" for name in config.member_names]
                    for fold in range(config.train.folds)], splits, data_dir, release, cv_dir,
                   checkpoint, inference, device, overwrite, progress, members_dir)
    metrics = evaluate_folder(cv_dir, data_dir, release=release, jobs=jobs, progress=progress)
    write_text(metrics.to_csv(index=False), out / "cv_metrics.csv")
    print(f"[{config.entry}] tune the post-processing on the cross-validation → "
          f"{out / 'postprocessing.json'}")
    rule, rule_file, metrics_pp = tune_reproduction(out, data_dir, release, jobs, progress)
    submission = submission_pp = None
    if validation_dir is not None:
        sub_dir = out / "submission"
        models = ("the models trained on every case" if config.submission_models == "all"
                  else "every fold model")
        print(f"[{config.entry}] predict {validation_dir} with {models} → {sub_dir}")
        predict_folder(submission_runs(config, runs), validation_dir, sub_dir,
                       device=device, overrides=inference,
                       probabilities_dir=out / "probabilities", checkpoint=checkpoint,
                       resume=True, overwrite=overwrite, progress=progress)
        require_valid_submission(sub_dir, validation_dir, progress=progress)
        zip_path = out / "submission.zip"
        submission = zip_submission(sub_dir, zip_path, overwrite=True)
        if postprocess == "tuned":
            pp_dir = out / "submission_pp"
            print(f"[{config.entry}] post-process the submission ({rule.describe()}) → {pp_dir}")
            postprocess_folder(sub_dir, pp_dir, rule, rule_file, resume=True, overwrite=True,
                               progress=progress)
            require_valid_submission(pp_dir, validation_dir, progress=progress)
            submission_pp = zip_submission(pp_dir, out / "submission_pp.zip", overwrite=True)
    row = leaderboard_row(metrics, config.entry)
    row_pp = leaderboard_row(metrics_pp, f"{config.entry}+pp")
    write_text(to_markdown(pd.concat([row, row_pp])), out / "leaderboard_row.md")
    print(f"[{config.entry}] cross-validation on {metrics['case'].nunique()} case(s), plain and "
          f"post-processed ({rule.describe()}):")
    print(to_markdown(pd.concat([row, row_pp])), end="")
    return {"config": config, "metrics": metrics, "row": row, "submission": submission,
            "postprocessing": rule, "metrics_pp": metrics_pp, "row_pp": row_pp,
            "submission_pp": submission_pp}
