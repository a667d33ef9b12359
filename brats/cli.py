"""The ``brats`` command: thin argparse front ends over library functions.

Every subcommand is ``brats [--no-progress] [-v | -q] <name> …`` (the global flags may also follow
the subcommand); user errors — bad arguments, bad input files, and OS errors such as a read-only
or full disk, each naming the path or key — print one line (``brats: error: …``) and exit with
status 2, problems found by ``brats check`` exit with status 1.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from brats import __version__
from brats.errors import BratsInputError
from brats.logs import configure_logging

if typing.TYPE_CHECKING:
    from brats.postprocess import PostprocessRule

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``brats: error: …``, status 2)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"brats: error: {message} (see {self.prog} --help)\n")


def _fold(text: str) -> str:
    """``--fold``: ``all`` or a non-negative integer (checked against ``train.folds`` later)."""
    if text != "all" and not (text.isdigit() and text.isascii()):
        raise argparse.ArgumentTypeError(f"expected a fold number 0, 1, … or 'all', got {text!r}")
    return text


def _positive_int(text: str) -> int:
    """A count or size argument: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _device(text: str) -> str:
    """``--device``: auto, cpu, mps, cuda or cuda:N, and a CUDA device must exist."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; expected auto, cpu, cuda or "
                                         "cuda:N")
    if text.startswith("cuda"):
        import torch

        index = int(text.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text}: this machine has "
                                             f"{torch.cuda.device_count()} CUDA device(s)")
    return text


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate a synthetic BraTS dataset."""
    from brats.synth.generator import generate_dataset

    ids = generate_dataset(args.out_dir, cases=args.cases, seed=args.seed, release=args.release,
                           shape=tuple(args.shape), with_seg=not args.no_seg, jobs=args.jobs,
                           progress=not args.no_progress)
    split = "validation (no segmentations)" if args.no_seg else "training"
    print(f"wrote {len(ids)} synthetic {split} case(s), BraTS {args.release} layout, "
          f"shape {tuple(args.shape)}, to {args.out_dir}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check a dataset folder and print a table of problems."""
    from brats.data.checks import check_dataset

    count, problems = check_dataset(args.data_dir, args.release, jobs=args.jobs,
                                    progress=not args.no_progress)
    if problems.empty:
        print(f"{args.data_dir}: {count} case(s), no problems found")
        return 0
    print(problems.to_string(index=False, justify="left"))
    print(f"{len(problems)} problem(s) in {args.data_dir} ({count} complete case(s) found)")
    return 1


def cmd_prepare(args: argparse.Namespace) -> int:
    """Build the preprocessing cache."""
    from brats.preprocess.cache import prepare_dataset

    records = prepare_dataset(args.data_dir, args.out, release=args.release, jobs=args.jobs,
                              dtype=args.dtype, locations=args.locations,
                              progress=not args.no_progress)
    training = sum(r.has_labels for r in records)
    print(f"cache {args.out}: {len(records)} case(s) ({training} with labels), "
          f"release {records[0].release}, image dtype {args.dtype}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Save a figure of one case."""
    from brats.data.layouts import discover
    from brats.io import refuse_overwriting_inputs
    from brats.viz import figure_format, plot_case, save_figure

    out = Path(args.out)
    figure_format(out)
    refuse_overwriting_inputs([out], [args.case_dir])
    if out.exists() and not args.overwrite:
        raise BratsInputError(f"{out} exists; pass --overwrite to replace it")
    cases = discover(args.case_dir, args.release)
    if args.case:
        cases = [c for c in cases if c.id == args.case]
        if not cases:
            raise BratsInputError(f"{args.case_dir}: no case {args.case!r}")
    elif len(cases) > 1:
        raise BratsInputError(
            f"{args.case_dir} holds {len(cases)} cases; pick one with --case "
            f"(e.g. --case {cases[0].id})")
    save_figure(plot_case(cases[0].load(), args.slice), out)
    print(f"wrote {out}")
    return 0


def _refuse_existing(path: str | None, overwrite: bool) -> None:
    if path and Path(path).exists() and not overwrite:
        raise BratsInputError(f"{path} exists; pass --overwrite to replace it")


def _evaluate_uncertainty(args: argparse.Namespace) -> None:
    """``brats evaluate --uncertainty DIR``: print the mean QU-BraTS scores per region."""
    from brats.io import write_text
    from brats.uncertainty import evaluate_uncertainty

    scores, _ = evaluate_uncertainty(args.pred_dir, args.ref_dir, args.uncertainty,
                                     release=args.release, points=args.uncertainty_points,
                                     progress=not args.no_progress)
    if args.out:
        out = Path(args.out)
        path = out.with_name(f"{out.stem}_uncertainty.csv")
        _refuse_existing(str(path), args.overwrite)
        write_text(scores.to_csv(index=False), path)
        print(f"wrote {path}")
    means = scores.groupby("region", sort=False)[["auc_dice", "auc_ftp", "auc_ftn", "score"]]
    print("QU-BraTS uncertainty (mean over cases):")
    print(means.mean().to_string(float_format=lambda v: f"{v:.4f}"))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score predictions against references and print the portal-style summary."""
    from brats.evaluation import evaluate_folder
    from brats.io import refuse_overwriting_inputs, write_text
    from brats.metrics import summarize

    refuse_overwriting_inputs([args.out], [args.pred_dir, args.ref_dir])
    _refuse_existing(args.out, args.overwrite)
    table = evaluate_folder(args.pred_dir, args.ref_dir, convention=args.convention,
                            release=args.release, allow_missing=args.allow_missing,
                            jobs=args.jobs, progress=not args.no_progress)
    if args.uncertainty:
        _evaluate_uncertainty(args)
    if args.out:
        write_text(table.to_csv(index=False), args.out)
        print(f"wrote {args.out} ({table['case'].nunique()} cases)")
    print(f"convention: {table.attrs['convention']}")
    print(summarize(table).to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a submission folder; zip it when it passes."""
    from brats.io import refuse_overwriting_inputs
    from brats.submission import check_submission, zip_submission

    zip_path = args.zip or str(Path(args.submission_dir).resolve()) + ".zip"
    refuse_overwriting_inputs([zip_path], [args.submission_dir, args.images])
    _refuse_existing(zip_path, args.overwrite)
    problems = check_submission(args.submission_dir, args.images, args.release,
                                progress=not args.no_progress)
    errors = problems[problems["severity"] == "error"]
    if not problems.empty:
        print(problems.to_string(index=False, justify="left"))
    if not errors.empty:
        print(f"{len(errors)} error(s): not a valid submission")
        return 1
    out = zip_submission(args.submission_dir, zip_path, overwrite=args.overwrite)
    print(f"valid submission ({len(problems)} warning(s)); wrote {out}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Rank methods from their metrics CSVs."""
    from brats.io import refuse_overwriting_inputs, write_text
    from brats.leaderboard import leaderboard, load_tables, plot_leaderboard, to_markdown
    from brats.viz import figure_format, save_figure

    names = args.name or [Path(p).name if Path(p).is_dir() else Path(p).stem
                          for p in args.metrics]
    if len(names) != len(args.metrics):
        raise BratsInputError(f"{len(names)} --name for {len(args.metrics)} metrics files")
    if len(set(names)) != len(names):
        raise BratsInputError(f"method names must differ: {names}; use --name")
    if args.plot:
        figure_format(args.plot)
    outputs = [p for p in (args.out, args.csv, args.plot) if p]
    if len({Path(p).resolve() for p in outputs}) != len(outputs):
        raise BratsInputError(f"--out, --csv and --plot must be different files: {outputs}")
    refuse_overwriting_inputs(outputs, args.metrics)
    for path in outputs:
        _refuse_existing(path, args.overwrite)
    tables = load_tables(args.metrics, names)
    board = leaderboard(tables)
    markdown = to_markdown(board)
    print(markdown, end="")
    if args.out:
        write_text(markdown, args.out)
    if args.csv:
        write_text(board.to_csv(), args.csv)
    if args.plot:
        save_figure(plot_leaderboard(tables), args.plot)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare runs on one dataset and write the report folder."""
    from brats.report import compare, load_runs, parse_run_args, write_report

    runs = load_runs(parse_run_args(args.runs), args.data, progress=not args.no_progress)
    comparison = compare(runs, args.data, n_boot=args.boot, seed=args.seed,
                         progress=not args.no_progress)
    page = write_report(comparison, args.out, overwrite=args.overwrite)
    print(comparison.leaderboard.round(3).to_string())
    print(f"wrote {page} (tables and figures in {args.out})")
    return 0


def _train_members(config, member: str | None) -> list[str]:
    names = config.member_names
    if member == "all":
        return names
    if member is None:
        if len(names) > 1:
            raise BratsInputError(f"{config.entry} has {len(names)} members ({', '.join(names)}); "
                                  "pick one with --member NAME or train all with --member all")
        return names
    config.member(member)
    return [member]


def cmd_train(args: argparse.Namespace) -> int:
    """Train one member (or all) of an entry on one fold."""
    from brats.config import load_config, parse_overrides
    from brats.reproduce import resolve_entry
    from brats.training.trainer import Trainer

    config = load_config(resolve_entry(args.config), args.profile, parse_overrides(args.overrides))
    fold = None if args.fold == "all" else int(args.fold)
    names = _train_members(config, args.member)
    for name in names:
        out = Path(args.out) / name if len(names) > 1 else Path(args.out)
        summary = Trainer(config.member(name), args.data, out, fold=fold, device=args.device,
                          resume=args.resume, overwrite=args.overwrite,
                          progress=not args.no_progress, member=name).fit()
        final = summary.get("final") or {}
        now = summary.get("trained_now", 0)
        done = (f"trained {now} epoch(s) now, {summary['epochs']} in all" if now
                else f"already trained ({summary['epochs']} epochs), nothing to do")
        best = summary["best_mean_dice"]
        validation = (f", best validation mean Dice {best:.4f}" if math.isfinite(best)
                      else " (no validation cases)")
        print(f"{name}: {done}, in {out}; last train loss "
              f"{final.get('train_loss', float('nan')):.4f}{validation}")
    return 0


def _split_positionals(items: list[str]) -> tuple[list[str], list[str]]:
    """Paths and the ``key=value`` overrides that argparse collected among them."""
    is_pair = ["=" in item and not Path(item).exists() for item in items]
    paths = [item for item, pair in zip(items, is_pair) if not pair]
    if not paths:
        raise BratsInputError("give at least one run or source folder before the key=value pairs")
    return paths, [item for item, pair in zip(items, is_pair) if pair]


def _inference_overrides(pairs: list[str], tta: int | None = None) -> dict[str, object]:
    """``inference.KEY=VALUE`` pairs (and ``--tta N``) → inference overrides without prefix."""
    from brats.config import parse_overrides
    from brats.inference.predictor import inference_overrides

    overrides = inference_overrides(parse_overrides(pairs))
    if tta is not None:
        if overrides.get("num_mirrors", tta) != tta:
            raise BratsInputError(f"--tta {tta} and inference.num_mirrors="
                                  f"{overrides['num_mirrors']} disagree; pass one of them")
        overrides["num_mirrors"] = tta
    return overrides


def _runs_or_model(items: list[str], model: object) -> tuple[list[str], list[str]]:
    """Run paths and ``key=value`` pairs; with ``--model`` the paths may be absent."""
    if all("=" in item and not Path(item).exists() for item in items):
        if not model:
            raise BratsInputError("give at least one run or source folder (or --model ZIP) "
                                  "before the key=value pairs")
        return [], list(items)
    return _split_positionals(items)


def _optional_dir(value: str | bool | None, pairs: list[str], output: str, suffix: str
                  ) -> tuple[str | None, list[str]]:
    """An ``--option [DIR]`` value: None, DIR, or OUTPUT+suffix when given bare (a KEY=VALUE
    that argparse took for the DIR goes back to the pairs)."""
    if isinstance(value, str) and "=" in value and not Path(value).exists():
        pairs, value = [*pairs, value], True
    if value is True:
        return str(Path(output)) + suffix, pairs
    return value or None, pairs


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict a dataset folder with one or more trained runs (their probabilities averaged)."""
    from brats.inference.predictor import predict_folder

    runs, pairs = _runs_or_model(args.runs, args.model)
    probabilities, pairs = _optional_dir(args.save_probabilities, pairs, args.output,
                                         "_probabilities")
    uncertainty, pairs = _optional_dir(args.uncertainty, pairs, args.output, "_uncertainty")
    overrides = _inference_overrides([*pairs, *args.overrides], args.tta)
    rule = _postprocess_rule(args.postprocess, args.postprocess_rule, runs)
    paths = predict_folder(runs, args.input, args.output, release=args.release,
                           device=args.device, overrides=overrides,
                           probabilities_dir=probabilities, shard=args.shard,
                           checkpoint=args.checkpoint, resume=args.resume,
                           overwrite=args.overwrite, progress=not args.no_progress,
                           uncertainty_dir=uncertainty,
                           uncertainty_measure=args.uncertainty_measure, model=args.model,
                           postprocess=rule)
    print(f"{len(paths)} prediction(s) in {args.output}"
          + (f", post-processed: {rule.describe()}" if rule else ""))
    return 0


def _postprocess_rule(mode: str, rule_file: str | None, runs: list[str]
                      ) -> PostprocessRule | None:
    """``--postprocess none|tuned`` and ``--postprocess-rule FILE`` → the rule, or None.

    ``tuned`` reads FILE, by default the ``postprocessing.json`` of the folder holding the runs
    (:func:`brats.postprocess.find_rule`)."""
    from brats.postprocess import find_rule, read_rule

    if mode == "none":
        if rule_file:
            raise BratsInputError("--postprocess-rule needs --postprocess tuned")
        return None
    return read_rule(rule_file or find_rule(list(runs)))


def cmd_postprocess_tune(args: argparse.Namespace) -> int:
    """Tune the post-processing rule on cross-validation predictions and store it."""
    from brats.io import refuse_overwriting_inputs
    from brats.postprocess import (
        ET_THRESHOLDS_VOXELS,
        PostprocessRule,
        rule_path,
        tune,
        write_rule,
    )

    out = rule_path(args.out or Path(args.cv_predictions).resolve().parent)
    refuse_overwriting_inputs([out], [args.cv_predictions, args.data])
    _refuse_existing(str(out), args.overwrite)
    record = tune(args.cv_predictions, args.data, release=args.release,
                  thresholds=tuple(args.thresholds or ET_THRESHOLDS_VOXELS), jobs=args.jobs,
                  progress=not args.no_progress)
    write_rule(record, out, overwrite=args.overwrite)
    rule, score = record["rule"], record["score"]
    candidates = record["candidates"]
    best = candidates.sort_values("score", ascending=False, kind="stable").head(5)
    print(best.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    described = PostprocessRule(tuple(rule["largest_component"]), rule["et_threshold_voxels"])
    print(f"chosen on {record['settings']['cases']} case(s): {described.describe()}; mean Dice "
          f"{score['plain']:.4f} → {score['postprocessed']:.4f}; wrote {out}")
    return 0


def cmd_postprocess_apply(args: argparse.Namespace) -> int:
    """Apply a stored post-processing rule to a folder of predictions."""
    from brats.postprocess import postprocess_folder, read_rule

    rule = read_rule(args.rule)
    files = postprocess_folder(args.pred_dir, args.output, rule, args.rule, release=args.release,
                               resume=args.resume, overwrite=args.overwrite,
                               progress=not args.no_progress)
    print(f"{len(files)} post-processed prediction(s) in {args.output}: {rule.describe()}")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    """Fuse saved probability maps and/or trained runs into one submission folder."""
    from brats.inference.fusion import ensemble_folder, is_run_source

    sources, pairs = _runs_or_model(args.sources, args.model)
    uncertainty, pairs = _optional_dir(args.uncertainty, pairs, args.output, "_uncertainty")
    overrides = _inference_overrides([*pairs, *args.overrides])
    work = args.work or str(Path(args.output)) + "_members"
    if args.model:
        from brats.package import predict_packages

        sources = [*sources, *map(str, predict_packages(
            args.model, args.input, work, release=args.release, device=args.device,
            overrides=overrides, resume=args.resume, overwrite=args.overwrite,
            progress=not args.no_progress))]
        if not any(is_run_source(Path(s)) for s in sources[:-len(args.model)]):
            overrides = {}  # used by the packages; the other sources are maps
    paths = ensemble_folder(sources, args.input, args.output, weights=args.weights,
                            work_dir=work, release=args.release, device=args.device,
                            checkpoint=args.checkpoint, overrides=overrides,
                            resume=args.resume, overwrite=args.overwrite,
                            progress=not args.no_progress, uncertainty_dir=uncertainty,
                            uncertainty_measure=args.uncertainty_measure)
    if uncertainty:
        print(f"{3 * len(paths)} uncertainty map(s) in {uncertainty}")
    print(f"{len(paths)} ensemble prediction(s) of {len(sources)} source(s) in {args.output}")
    return 0


def _add_postprocess_flag(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--postprocess", default="none", choices=["none", "tuned"], help=text)


def _add_uncertainty_flags(p: argparse.ArgumentParser, default: str) -> None:
    """``--uncertainty [DIR]`` and ``--uncertainty-measure`` of predict and ensemble."""
    p.add_argument("--uncertainty", nargs="?", const=True, metavar="DIR",
                   help="also write QU-BraTS uncertainty maps <case>_unc_whole/_core/_enhance"
                        f".nii.gz (0-100) in DIR (default: {default})")
    p.add_argument("--uncertainty-measure", default="entropy", choices=["entropy", "std"],
                   help="entropy of the mean region probability (default) or spread (std) of "
                        "the samples")


def cmd_export(args: argparse.Namespace) -> int:
    """Pack runs into a model package."""
    from brats.io import refuse_overwriting_inputs
    from brats.package import export_package, export_torchscript

    refuse_overwriting_inputs([args.out], args.runs)
    if args.torchscript:
        if len(args.runs) != 1:
            raise BratsInputError("--torchscript exports one run's network; give one run")
        export_torchscript(args.runs[0], args.out, checkpoint=args.checkpoint,
                           overwrite=args.overwrite)
        print(f"wrote {args.out} (TorchScript)")
        return 0
    manifest = export_package(args.runs, args.out, checkpoint=args.checkpoint,
                              overwrite=args.overwrite)
    print(f"wrote {args.out}: {manifest['entry']}, {len(manifest['members'])} member(s), "
          f"combine rule {manifest['combine']}")
    return 0


def _add_prediction_flags(p: argparse.ArgumentParser, what: str) -> None:
    """``--checkpoint`` and ``--continue`` | ``--overwrite`` of predict and ensemble."""
    p.add_argument("--checkpoint", default="final", choices=["final", "best"],
                   help="final (default: checkpoint_last.pt, as the entries submitted) or best "
                        "(checkpoint_best.pt, chosen on the fold's validation patches)")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--continue", dest="resume", action="store_true",
                          help=f"finish an existing {what} with the settings it was made with "
                               "(an error if they differ)")
    existing.add_argument("--overwrite", action="store_true",
                          help=f"start the {what} again: remove what brats wrote there")


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Reproduce an entry end to end."""
    from brats.config import parse_overrides
    from brats.reproduce import reproduce

    reproduce(args.entry, args.data, args.out, validation_dir=args.validation,
              profile=args.profile, overrides=parse_overrides(args.overrides), device=args.device,
              jobs=args.jobs, checkpoint=args.checkpoint, overwrite=args.overwrite,
              progress=not args.no_progress, postprocess=args.postprocess)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo on synthetic data."""
    from brats.demo import run_demo

    run_demo(Path(args.out), progress=not args.no_progress,
             submissions=None if args.submissions is None else Path(args.submissions))
    return 0


def cmd_entries(args: argparse.Namespace) -> int:
    """List the shipped entry configs with their descriptions and profiles."""
    from brats.entries import describe_entries

    for info in describe_entries():
        print(f"{info.name}: {info.description}\n    profiles: {', '.join(info.profiles)}")
    return 0


def _add_global_flags(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """``--no-progress``, ``-v``/``--verbose`` and ``-q``/``--quiet``. Subcommands repeat them with
    suppressed defaults, so a flag given before the subcommand is not reset by its default."""
    default = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars", **default)
    parser.add_argument("-v", "--verbose", action="store_true", help="also show debug messages",
                        **default)
    parser.add_argument("-q", "--quiet", action="store_true", help="show only warnings and errors",
                        **default)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``brats`` command."""
    parser = _Parser(
        prog="brats", description="Reproduce, evaluate and compare the top BraTS 2017 entries.")
    parser.add_argument("--version", action="version", version=f"brats {__version__}")
    _add_global_flags(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        _add_global_flags(p, suppress=True)
        return p

    p = add("synth", cmd_synth, "generate a synthetic BraTS dataset on MNI152 anatomy")
    p.add_argument("out_dir", help="output folder (must not exist or be empty)")
    p.add_argument("--cases", type=_positive_int, default=10, help="number of cases (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--release", default="2017", help="layout and naming to write (default 2017)")
    p.add_argument("--shape", nargs=3, type=_positive_int, default=[240, 240, 155], metavar=("X", "Y", "Z"),
                   help="grid size; smaller grids keep the 240×240×155 mm field of view")
    p.add_argument("--no-seg", action="store_true", help="validation split: no segmentations")
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")

    p = add("check", cmd_check, "check a dataset folder; exit 1 if any problem")
    p.add_argument("data_dir")
    p.add_argument("--release", help="force the release (default: detect)")
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")

    p = add("prepare", cmd_prepare, "crop, z-score and cache a dataset for training")
    p.add_argument("data_dir")
    p.add_argument("--out", required=True, help="cache folder (new, or an earlier cache to resume)")
    p.add_argument("--release", help="force the release (default: detect)")
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="cached image dtype (float16 halves the disk space)")
    p.add_argument("--locations", type=_positive_int, default=1000,
                   help="foreground voxel coordinates stored per label for sampling")

    p = add("show", cmd_show, "save an axial slice of the four modalities with the labels")
    p.add_argument("case_dir", help="a case folder (or a dataset folder with --case)")
    p.add_argument("--out", required=True, help="figure file (.png, .pdf, .svg)")
    p.add_argument("--case", help="case id when CASE_DIR holds several cases")
    p.add_argument("--slice", type=int, help="axial slice index (default: most tumour)")
    p.add_argument("--release", help="force the release (default: detect)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing figure")

    p = add("evaluate", cmd_evaluate, "score predictions (WT, TC, ET: Dice, HD95, sensitivity, "
                                      "specificity)")
    p.add_argument("pred_dir", help="folder of <case>.nii.gz predictions")
    p.add_argument("ref_dir", help="dataset folder of any release, or a flat folder of label files")
    p.add_argument("--out", help="per-case CSV (case, region, dice, hd95, ...)")
    p.add_argument("--convention",
                   help="brats-legacy (the 2017-2022 scorer), brats2023-lesionwise (the 2023 "
                        "scorer), brats2024 (the 2024+ scorer) or max-directed (default: the "
                        "scorer of the references' release: legacy up to 2022, lesion-wise for "
                        "2023, brats2024 for 2024)")
    p.add_argument("--release", help="label convention / layout of the references (default: detect)")
    p.add_argument("--allow-missing", action="store_true",
                   help="score cases without a prediction as empty predictions")
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--uncertainty", metavar="DIR",
                   help="also run the QU-BraTS uncertainty evaluation on the <case>_unc_*.nii.gz "
                        "maps in DIR (REF_DIR must hold the images: they give the brain mask); "
                        "with --out, per-case scores go to OUT_uncertainty.csv")
    p.add_argument("--uncertainty-points", type=_positive_int, default=4, metavar="N",
                   help="uncertainty thresholds 0, 100/N, ..., 100 (default 4)")

    p = add("validate", cmd_validate, "check a submission folder like the portal; zip it if valid")
    p.add_argument("submission_dir")
    p.add_argument("--images", required=True, help="the validation/test image folder it answers")
    p.add_argument("--release", help="release (default: detect from the image folder)")
    p.add_argument("--zip", help="zip file to write (default: SUBMISSION_DIR.zip)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing zip")

    p = add("leaderboard", cmd_leaderboard, "rank methods from metrics CSVs (BraTS ranking score)")
    p.add_argument("metrics", nargs="+", help="metrics CSVs written by brats evaluate, or brats "
                   "reproduce folders (their cv_metrics.csv, and cv_metrics_pp.csv as NAME+pp)")
    p.add_argument("--name", action="append", help="method name per CSV, in order (repeatable)")
    p.add_argument("--out", help="Markdown table to write")
    p.add_argument("--csv", help="CSV table to write")
    p.add_argument("--plot", help="figure with per-region box plots (.png, .pdf)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    p = add("compare", cmd_compare, "compare runs on one dataset: statistics, breakdowns, "
            "figures and one HTML report")
    p.add_argument("runs", nargs="+", metavar="RUN", help="[NAME=]PATH: a brats reproduce, "
                   "predict or ensemble folder, or a metrics CSV")
    p.add_argument("--data", required=True, help="the dataset the runs were scored on")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--boot", type=_positive_int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a report of other inputs in --out")

    p = add("train", cmd_train, "train one member of an entry on one fold")
    p.add_argument("config", help="entry name (e.g. isensee2017) or a config .yaml")
    p.add_argument("--data", required=True, help="cache folder made by brats prepare")
    p.add_argument("--fold", default="0", type=_fold, help="fold 0..folds-1, or 'all' for every case")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--member", help="member to train ('all' for every member)")
    p.add_argument("--profile", help="config profile, e.g. quick (default: paper settings)")
    p.add_argument("--device", default="auto", type=_device, help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (with a "
                   "larger train.epochs: continue to the new end)")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a --out that holds a run (removes only the run's files)")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. train.epochs=2")

    p = add("predict", cmd_predict, "predict a dataset folder; probabilities of all runs averaged")
    p.add_argument("runs", nargs="*", help="run folders (or folders holding runs); none with "
                   "--model")
    p.add_argument("overrides", nargs="*",
                   help="inference settings KEY=VALUE, e.g. inference.amp=true inference.num_mirrors=1")
    p.add_argument("--input", required=True, help="dataset folder of any release")
    p.add_argument("--output", required=True, help="prediction folder (new or empty)")
    p.add_argument("--tta", type=int, help="number of mirror combinations (1-8), the same as "
                   "inference.num_mirrors=N")
    p.add_argument("--save-probabilities", nargs="?", const=True, metavar="DIR",
                   help="also save <case>_probabilities.npz (float16) for later ensembling, in DIR "
                        "(default: OUTPUT_probabilities)")
    p.add_argument("--shard", help="K/N: predict every N-th case starting at the K-th (each shard "
                   "of a shared folder passes --continue)")
    p.add_argument("--release", help="force the release (default: detect)")
    p.add_argument("--device", default="auto", type=_device, help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--model", metavar="ZIP", help="a model package (brats export) instead of runs")
    _add_uncertainty_flags(p, "OUTPUT_uncertainty")
    _add_prediction_flags(p, "prediction folder")
    _add_postprocess_flag(p, "none (default, as the entries submitted) or tuned: apply the rule "
                          "of brats postprocess tune (ET below a voxel threshold → NCR/NET, "
                          "largest components) to the label maps")
    p.add_argument("--postprocess-rule", metavar="JSON", help="the rule file for --postprocess "
                   "tuned (default: postprocessing.json of the folder holding the runs)")

    p = add("ensemble", cmd_ensemble, "average the class probabilities of several members "
            "(saved maps or trained runs), argmax, write submission files")
    p.add_argument("sources", nargs="*", help="folders of <case>_probabilities.npz, run folders "
                   "or folders holding runs (e.g. OUT/runs of brats reproduce)")
    p.add_argument("overrides", nargs="*",
                   help="inference settings KEY=VALUE for the run sources, e.g. inference.amp=true")
    p.add_argument("--input", required=True, help="the dataset the maps belong to")
    p.add_argument("--output", required=True, help="submission folder (new or empty)")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per source (default: equal)")
    p.add_argument("--work", help="where run sources are predicted (default: OUTPUT_members)")
    p.add_argument("--release", help="force the release (default: detect)")
    p.add_argument("--device", default="auto", type=_device, help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--model", metavar="ZIP", action="append",
                   help="a model package (brats export) as one more source, after the others "
                        "(repeatable; --weights count them too)")
    _add_uncertainty_flags(p, "OUTPUT_uncertainty; a folder of its own")
    _add_prediction_flags(p, "submission folder (and the run sources' work folders)")

    p = add("export", cmd_export, "pack trained runs (weights, configs, combine rule) into one "
            "shareable model package")
    p.add_argument("runs", nargs="+", help="run folders (or folders holding runs) of one entry")
    p.add_argument("--out", required=True, help="the package to write (.zip)")
    p.add_argument("--torchscript", action="store_true",
                   help="instead, trace one run's network to a TorchScript file (.pt)")
    p.add_argument("--checkpoint", default="final", choices=["final", "best"],
                   help="weights to pack: final (default) or best")
    p.add_argument("--overwrite", action="store_true", help="replace an existing package")

    p = add("reproduce", cmd_reproduce, "prepare, train all folds, cross-validate, predict, score")
    p.add_argument("entry", help="isensee2017, wang2017, kamnitsas2017 or a config .yaml")
    p.add_argument("--data", required=True, help="training dataset folder (with segmentations)")
    p.add_argument("--validation", help="validation folder to predict into a submission")
    p.add_argument("--out", required=True, help="output folder (re-running resumes)")
    p.add_argument("--profile", default="paper", help="paper (default) or quick")
    p.add_argument("--device", default="auto", type=_device, help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes for prepare/evaluate")
    p.add_argument("--checkpoint", default="final", choices=["final", "best"],
                   help="checkpoint the cross-validation and submission predict with (default "
                        "final)")
    p.add_argument("--overwrite", action="store_true",
                   help="accept other settings than OUT was made with: redo what they change")
    _add_postprocess_flag(p, "the tuned post-processing (always tuned on the cross-validation "
                          "and scored as ENTRY+pp) also for the submission, in "
                          "OUT/submission_pp (default none)")
    p.add_argument("overrides", nargs="*", help="config overrides key=value (inference.* ones act "
                   "at prediction time only)")

    p = add("demo", cmd_demo, "the demo on synthetic data (what `make demo` runs)")
    p.add_argument("--out", default="demo_output", help="working folder (reused by a second run)")
    p.add_argument("--submissions", help="where the validated submission folders go "
                   "(default: OUT/submissions)")

    p = add("postprocess", cmd_postprocess_tune, "tune the post-processing of label maps on "
            "cross-validation predictions, or apply a tuned rule")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("tune", help="choose the ET volume threshold and largest-component "
                           "regions that maximise the mean cross-validated Dice",
                           description="choose the ET volume threshold (voxels) and the regions "
                           "reduced to their largest component that maximise the mean legacy "
                           "Dice over WT, TC and ET; store the rule as JSON")
    p.set_defaults(handler=cmd_postprocess_tune)
    _add_global_flags(p, suppress=True)
    p.add_argument("cv_predictions", help="folder of cross-validation predictions <case>.nii.gz")
    p.add_argument("--data", required=True, help="the training dataset they predict")
    p.add_argument("--out", help="run folder (writes OUT/postprocessing.json) or a .json file "
                   "(default: the folder holding CV_PREDICTIONS)")
    p.add_argument("--thresholds", type=int, nargs="+", metavar="VOXELS",
                   help="ET volume thresholds to try, in voxels (default 0 50 100 … 1000)")
    p.add_argument("--release", help="force the release (default: detect)")
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")
    p.add_argument("--overwrite", action="store_true", help="replace an existing rule file")
    p = actions.add_parser("apply", help="apply a tuned rule to a prediction folder",
                           description="apply a rule of brats postprocess tune to every "
                           "<case>.nii.gz of a folder, into a new folder")
    p.set_defaults(handler=cmd_postprocess_apply)
    _add_global_flags(p, suppress=True)
    p.add_argument("pred_dir", help="folder of <case>.nii.gz predictions")
    p.add_argument("--rule", required=True, help="postprocessing.json of brats postprocess tune")
    p.add_argument("--output", required=True, help="post-processed folder (new or empty)")
    p.add_argument("--release", help="the predictions' release (default: from PRED_DIR's "
                   "manifest)")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--continue", dest="resume", action="store_true",
                          help="redo an existing output folder made with the same settings")
    existing.add_argument("--overwrite", action="store_true",
                          help="start the output folder again: remove what brats wrote there")

    add("entries", cmd_entries, "list the reproduced entries with their descriptions and profiles")
    return parser


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``brats`` console script; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # key=value overrides may also follow the options (argparse stops collecting positionals
        # at the first option).
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.verbose and args.quiet:
        parser.error("pass at most one of --verbose and --quiet")
    configure_logging(1 if args.verbose else -1 if args.quiet else 0)
    try:
        return args.handler(args)
    except BratsInputError as exc:
        print(f"brats: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # permissions, read-only or full disks: one line naming the path
        where = " → ".join(str(f) for f in (exc.filename, exc.filename2) if f)
        reason = exc.strerror or str(exc)
        print(f"brats: error: {_one_line(where) + ': ' if where else ''}{_one_line(reason)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brats: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
