"""Benchmark CPU inference on one full synthetic BraTS case for every entry, against MONAI.

Usage::

    python benchmarks/inference/bench_inference.py [--quick] [--threads 2] [--tta-mirrors K]
        [--entries isensee2017,wang2017,kamnitsas2017] [--variants fp32,bf16,...] [--rounds N]
        [--shape X Y Z] [--roi N] [--overlap F] [--no-baseline] [--no-isolate] [--work DIR] [--out DIR]

One synthetic validation case (``brats.synth.generate_dataset``, default 240×240×155) is predicted
by:

* **baseline** — the case loaded, z-scored over the whole grid, then MONAI
  ``sliding_window_inference`` (``roi``³ windows, ``overlap``, Gaussian blending, batch 1) of a
  MONAI ``DynUNet`` of about the Isensee network's size (filters 21–336, residual blocks,
  9.8 M parameters against 9.48 M), softmax and argmax, over the full grid;
* **each entry** whose ``submissions/<entry>.yaml`` exists (a missing one is skipped with a
  note, so an entry is picked up as soon as its YAML lands): its members built from the YAML as
  the trainer builds them (``Trainer.num_outputs``, ``build_network``), with random weights
  (timing does not depend on them), run by ``brats.inference.predictor.predict_case``, i.e.
  load, brain crop, z-score, the entry's combine rule (``CASE_PREDICTORS[config.combine]``) and
  paste back.

Variants for entries whose combine rule is ``mean`` (the core predictor, which honours the
``inference`` section): ``fp32`` and ``bf16`` (``inference.amp``), each also with the networks in
channels-last memory format (``-cl``; the predictor has no option for it, the benchmark converts
its own networks), ``fp32-sw`` (``inference.mode=sliding_window`` with the baseline's window and
overlap, on the brain crop), and ``fp32-tta``/``bf16-tta`` with ``--tta-mirrors`` mirrors. TTA
off is 1 mirror and 1 repeat. Other rules (Wang's ``cascade``) honour ``inference.amp`` but
ignore the mode and TTA: ``fp32`` and ``bf16`` only. ``torch.inference_mode`` is always on
(``predict_logits`` and ``predict_slabs`` use it).

With fewer than 8 measured mirrors the 8-mirror time is extrapolated linearly: one pass costs
``(t_k − t_1)/(k − 1)`` (the same entry and precision without TTA), or ``t_1 − load`` when
``k = 1``; the table says which rows are extrapolated. Each row runs in a fresh process (unless
``--no-isolate``) whose peak resident set (``ru_maxrss``) is the row's peak memory. Rows report
wall and process CPU seconds; with ``--rounds N`` every row runs N times, round-robin, and keeps
its fastest run (other jobs on a shared machine only ever slow a run down). The argmax
labels of ``bf16`` and ``fp32`` are compared (voxel agreement, Dice per region).
Results: ``<out>/inference.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    environment,
    header_lines,
    load_average,
    peak_rss_mib,
    target_row,
    write_result,
)
from brats.config import InferenceConfig, load_config, to_dict  # noqa: E402
from brats.data.labels import REGIONS  # noqa: E402
from brats.data.layouts import discover  # noqa: E402
from brats.inference.predictor import Member, predict_case, preprocess  # noqa: E402
from brats.inference.tta import mirror_combinations  # noqa: E402
from brats.nets import build_network  # noqa: E402
from brats.preprocess.crop import brain_mask  # noqa: E402
from brats.preprocess.normalize import zscore  # noqa: E402
from brats.synth import generate_dataset  # noqa: E402
from brats.training.trainer import Trainer  # noqa: E402

ENTRIES = ("isensee2017", "wang2017", "kamnitsas2017")
#: Combine rules whose predictor honours ``inference.amp``, ``mode`` and the mirror settings.
TTA_RULES = ("mean",)
#: variant → (bf16 autocast, channels-last networks, inference.mode override or None, TTA on)
VARIANTS = {
    "fp32": (False, False, None, False),
    "bf16": (True, False, None, False),
    "fp32-tta": (False, False, None, True),
    "bf16-tta": (True, False, None, True),
    "fp32-cl": (False, True, None, False),
    "bf16-cl": (True, True, None, False),
    "fp32-sw": (False, False, "sliding_window", False),
}
#: Variants run for every entry; the others only for the ``--explore`` entries.
COMMON_VARIANTS = ("fp32", "bf16")
ALL_MIRRORS = 8
#: MONAI DynUNet of about the Isensee network's size: 9,797,932 parameters against 9,483,788.
BASELINE_FILTERS = (21, 42, 84, 168, 336)
BASELINE = "baseline: MONAI DynUNet, full grid"
MEMORY_LIMIT_GIB = 8.0
SPEEDUP_TARGET = 1.5


@dataclass(frozen=True)
class Row:
    """One timed configuration: the baseline, or an entry in one variant."""

    name: str
    entry: str | None
    variant: str
    amp: bool = False
    channels_last: bool = False
    mode: str | None = None
    mirrors: int = 1


def windows(shape: tuple[int, ...], roi: int, overlap: float) -> int:
    """Number of sliding windows MONAI places on ``shape`` (its scan interval rule)."""
    interval = max(int(roi * (1 - overlap)), 1)
    return math.prod(1 if n <= roi else math.ceil((n - roi) / interval) + 1 for n in shape)


def baseline_network() -> torch.nn.Module:
    from monai.networks.nets import DynUNet

    depth = len(BASELINE_FILTERS)
    return DynUNet(3, 4, 4, kernel_size=[3] * depth, strides=[1] + [2] * (depth - 1),
                   upsample_kernel_size=[2] * (depth - 1), filters=list(BASELINE_FILTERS),
                   norm_name="instance", res_block=True).eval()


def member_inference(cfg: InferenceConfig, row: Row, roi: int, overlap: float) -> InferenceConfig:
    """A member's inference settings for ``row``: precision, mirrors (all three axes when TTA is on,
    1 repeat), and sliding windows of the baseline's size for members that run whole volumes."""
    changes: dict = {"amp": row.amp, "num_mirrors": row.mirrors, "repeats": 1}
    if row.mirrors > 1:
        changes["mirror_axes"] = (0, 1, 2)
    if row.mode is not None and cfg.mode == "whole":
        changes.update(mode=row.mode, roi_size=(roi,) * 3, overlap=overlap)
    return replace(cfg, **changes)


def build_members(config_path: Path, row: Row, roi: int, overlap: float) -> tuple[str, list[Member]]:
    """The entry's combine rule and its members with random weights, as ``load_member`` would
    return them after training, in ``row``'s variant."""
    config = load_config(config_path)
    members = []
    for name in config.member_names:
        cfg = config.member(name)
        trainer = Trainer(cfg, config_path.parent, config_path.parent, device="cpu", progress=False)
        network = build_network(cfg.network.name, in_channels=4, num_classes=trainer.num_outputs,
                                **cfg.network.kwargs).eval()
        if row.channels_last:
            network = network.to(memory_format=torch.channels_last_3d)
        members.append(Member(name, network, member_inference(cfg.inference, row, roi, overlap),
                              trainer.target, cfg.data.intensity, config_path, to_dict(cfg)))
    return config.combine, members


def run_row(row: Row, case_dir: str, labels_path: str, threads: int, roi: int, overlap: float,
            submissions: str) -> dict:
    """Time one row on the case (a worker task); its argmax labels go to ``labels_path``."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    case = discover(case_dir)[0]
    device = torch.device("cpu")
    start, cpu = time.perf_counter(), time.process_time()
    data = case.load(with_labels=False)
    if row.entry is None:
        network = baseline_network()
        image, _, _ = zscore(data.image, brain_mask(data.image))
        load_s = time.perf_counter() - start
        from monai.inferers import sliding_window_inference

        with torch.inference_mode():
            logits = sliding_window_inference(torch.from_numpy(image)[None], (roi,) * 3, 1, network,
                                              overlap=overlap, mode="gaussian", progress=True)
            labels = torch.softmax(logits, 1).argmax(1)[0].to(torch.uint8).numpy()
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        crop_shape, members, rule = tuple(data.image.shape[1:]), 1, "monai sliding window"
        params = sum(p.numel() for p in network.parameters())
        sw_windows = windows(crop_shape, roi, overlap)
    else:
        image, _ = preprocess(data)
        load_s = time.perf_counter() - start
        rule, built = build_members(Path(submissions) / f"{row.entry}.yaml", row, roi, overlap)
        start, cpu = time.perf_counter(), time.process_time()
        labels, _, _ = predict_case(built, case, device)
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        crop_shape, members = tuple(image.shape[1:]), len(built)
        params = sum(p.numel() for m in built for p in m.network.parameters())
        sw_windows = sum(windows(crop_shape, roi, overlap) for m in built
                         if m.inference.mode == "sliding_window") or None
    np.save(labels_path, labels.astype(np.uint8))
    return {**asdict(row), "combine": rule, "members": members, "parameters": params,
            "seconds": seconds, "cpu_s": cpu_s, "load_preprocess_s": load_s, "crop_shape": list(crop_shape),
            "sliding_windows": sw_windows, "peak_rss_mib": peak_rss_mib()}


def best_of(runs: list[dict]) -> dict:
    """One row from its rounds: the fastest run (the least disturbed by other jobs), with every
    round's wall and CPU seconds and the largest peak RSS; the first error if any round failed."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best.update(seconds_all=[r["seconds"] for r in runs], cpu_s_all=[r["cpu_s"] for r in runs],
                peak_rss_mib=max(r["peak_rss_mib"] for r in runs))
    return best


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def agreement(labels_a: np.ndarray, labels_b: np.ndarray) -> dict:
    """Voxel agreement of two label maps (whole grid and brain voxels) and Dice per region."""
    brain = (labels_a > 0) | (labels_b > 0)
    return {"voxel_agreement": float((labels_a == labels_b).mean()),
            "labelled_voxel_agreement": float((labels_a == labels_b)[brain].mean()) if brain.any() else 1.0,
            "dice": {r: dice(np.isin(labels_a, m), np.isin(labels_b, m)) for r, m in REGIONS.items()}}


def case_folder(work: Path, shape: tuple[int, int, int], seed: int) -> Path:
    """A folder holding one synthetic validation case of ``shape`` (generated once, then reused)."""
    folder = work / f"inference-case-{'x'.join(map(str, shape))}-seed{seed}"
    done = folder / ".complete"
    if not done.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        generate_dataset(folder, cases=1, seed=seed, shape=shape, with_seg=False)
        done.touch()
    return folder


def plan(entries: list[str], variants: list[str], explore: list[str], mirrors: int,
         submissions: Path, baseline: bool = True) -> tuple[list[Row], dict[str, str]]:
    """Rows to run, and a note for every entry left out (no YAML, unreadable YAML) or reduced."""
    rows = [Row(BASELINE, None, "fp32")] if baseline else []
    notes = {}
    for entry in entries:
        path = submissions / f"{entry}.yaml"
        if not path.is_file():
            shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            notes[entry] = f"skipped: {shown} not found"
            continue
        try:
            config = load_config(path)
        except Exception as exc:  # noqa: BLE001  (a YAML being written: note it and go on)
            notes[entry] = f"skipped: {type(exc).__name__}: {exc}"
            continue
        usable = [v for v in variants if (v in COMMON_VARIANTS or entry in explore)
                  and not (VARIANTS[v][3] and mirrors == 1)]
        if config.combine not in TTA_RULES:
            usable = [v for v in usable if v in ("fp32", "bf16")]
            notes[entry] = (f"combine rule {config.combine!r} ignores inference.mode and mirror "
                            "TTA: fp32 and bf16 without TTA only")
        for variant in usable:
            amp, channels_last, mode, tta = VARIANTS[variant]
            rows.append(Row(f"{entry} {variant}", entry, variant, amp, channels_last, mode,
                            mirrors if tta else 1))
    return rows, notes


def extrapolate(rows: list[dict]) -> None:
    """Add ``seconds_8_mirrors`` to the TTA rows and to the TTA-off rows of entries whose predictor
    mirrors (``TTA_RULES``) that have no TTA row of their precision: measured with 8 mirrors,
    else extrapolated linearly from the measured passes (the module docstring says how)."""
    ok = [r for r in rows if r["entry"] is not None and "error" not in r]
    single = {(r["entry"], r["amp"]): r for r in ok if r["variant"] in ("fp32", "bf16")}
    mirrored = {(r["entry"], r["amp"]) for r in ok if r["variant"].endswith("-tta")}
    for row in ok:
        key, k = (row["entry"], row["amp"]), row["mirrors"]
        if row["variant"].endswith("-tta"):
            if k >= ALL_MIRRORS:
                row["seconds_8_mirrors"], row["extrapolated"] = row["seconds"], False
                continue
            if key in single:
                base = single[key]["seconds"]
                per_pass = (row["seconds"] - base) / (k - 1)
            else:
                per_pass = (row["seconds"] - row["load_preprocess_s"]) / k
                base = row["load_preprocess_s"] + per_pass
        elif row is single.get(key) and key not in mirrored and row["combine"] in TTA_RULES:
            per_pass = row["seconds"] - row["load_preprocess_s"]
            base = row["seconds"]
        else:
            continue
        row["seconds_per_pass"] = per_pass
        row["seconds_8_mirrors"] = base + (ALL_MIRRORS - 1) * per_pass
        row["extrapolated"] = True


def targets(result: dict) -> list[dict]:
    """Summary rows: the speed-up target, seconds per case, peak memory, bf16 agreement."""
    rows = {r["name"]: r for r in result["rows"] if "error" not in r}
    base = rows.get(BASELINE)
    out = []
    isensee = rows.get("isensee2017 fp32")
    if base and isensee:
        ratio = base["seconds"] / isensee["seconds"]
        out.append(target_row("inference", "isensee2017 predictor (fp32, TTA off) vs MONAI sliding-window "
                              "DynUNet on the full grid, speed-up", ratio, "×", f"≥ {SPEEDUP_TARGET}",
                              ratio >= SPEEDUP_TARGET))
    bf16 = rows.get("isensee2017 bf16")
    if base and bf16:
        out.append(target_row("inference", "isensee2017 predictor (bf16, TTA off) vs baseline, speed-up",
                              base["seconds"] / bf16["seconds"], "×", "—", None))
    for entry in dict.fromkeys(r["entry"] for r in rows.values() if r["entry"]):
        mine = [r for r in rows.values() if r["entry"] == entry]
        for r in mine:
            if r["variant"] in ("fp32", "bf16"):
                out.append(target_row("inference", f"{entry} {r['variant']}, TTA off: s/case",
                                      r["seconds"], "s", "—", None))
            if r.get("seconds_8_mirrors") is not None:
                how = (f"extrapolated from {r['mirrors']} mirror{'s' if r['mirrors'] > 1 else ''}"
                       if r["extrapolated"] else "8 mirrors measured")
                out.append(target_row("inference", f"{entry} {r['variant'].removesuffix('-tta')}, "
                                      f"8-mirror TTA ({how}): s/case",
                                      r["seconds_8_mirrors"], "s", "—", None))
        if mine[0]["combine"] not in TTA_RULES:
            out.append(target_row("inference", f"{entry}, 8-mirror TTA: s/case", None, "s",
                                  f"n/a: combine rule {mine[0]['combine']!r} has no mirror TTA", None))
        peak = max(r["peak_rss_mib"] for r in mine) / 1024
        out.append(target_row("inference", f"{entry}: peak RSS of inference, one full case",
                              peak, "GiB", f"< {MEMORY_LIMIT_GIB:g}", peak < MEMORY_LIMIT_GIB))
    for entry, agree in result["bf16_vs_fp32"].items():
        out.append(target_row("inference", f"{entry}: bf16 vs fp32 argmax agreement (labelled voxels)",
                              agree["labelled_voxel_agreement"], "fraction", "—", None))
    return out


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def write_markdown(result: dict) -> list[str]:
    s = result["settings"]
    lines = header_lines("Inference benchmark: seconds per case on the CPU", result["environment"],
                         s["quick"])
    lines += [
        f"* Case: one synthetic {'×'.join(map(str, s['shape']))} validation case "
        f"(`brats.synth.generate_dataset`, seed {s['seed']}); random weights (timing does not depend "
        "on them); torch " + result["environment"]["torch"],
        f"* Baseline: MONAI `sliding_window_inference` (roi {s['roi']}³, overlap {s['overlap']}, "
        f"Gaussian, batch 1) of a MONAI `DynUNet` (filters {'–'.join(map(str, BASELINE_FILTERS))}, "
        "residual) on the full grid, after loading and z-scoring; softmax + argmax",
        "* Entries: `predict_case` (load, brain crop, z-score, the entry's combine rule, paste back); "
        "TTA off = 1 mirror, 1 repeat",
        "",
        "| row | members | params | precision | memory format | mode | mirrors run | s/case | CPU s | "
        "s/case, 8 mirrors | speed-up vs baseline | load + preprocess s | sliding windows | "
        "peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = next((r for r in result["rows"] if r["name"] == BASELINE and "error" not in r), None)
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error'][:100]} |" + " |" * 12)
            continue
        eight = _fmt(r.get("seconds_8_mirrors"))
        if r.get("extrapolated"):
            eight += f" (extrapolated from {r['mirrors']})"
        ratio = base["seconds"] / r["seconds"] if base and r["entry"] and r["mirrors"] == 1 else None
        mode = r["mode"] or ("sliding window" if r["entry"] is None else "config")
        lines.append(
            f"| {r['name']} | {r['members']} | {r['parameters'] / 1e6:.2f} M | "
            f"{'bf16' if r['amp'] else 'fp32'} | {'channels-last' if r['channels_last'] else 'contiguous'} | "
            f"{mode} | {r['mirrors']} | {r['seconds']:.1f} | {r['cpu_s']:.0f} | {eight} | "
            f"{_fmt(ratio, '.2f')}{'×' if ratio else ''} | {r['load_preprocess_s']:.2f} | "
            f"{_fmt(r['sliding_windows'], 'd')} | {r['peak_rss_mib'] / 1024:.2f} |")
    lines.append("")
    for entry, note in result["notes"].items():
        lines.append(f"* {entry}: {note}")
    for entry, agree in result["bf16_vs_fp32"].items():
        d = agree["dice"]
        lines.append(f"* {entry} bf16 vs fp32 argmax labels: {100 * agree['voxel_agreement']:.3f} % of "
                     f"all voxels and {100 * agree['labelled_voxel_agreement']:.2f} % of voxels labelled "
                     f"by either agree; Dice WT {d['WT']:.4f}, TC {d['TC']:.4f}, ET {d['ET']:.4f} "
                     "(random weights: near-tied logits make this a pessimistic estimate)")
    for r in result["rows"]:
        if r.get("paper_passes"):
            lines.append(f"* {r['name']}: the paper config's {r['paper_passes']} passes (mirrors × "
                         f"dropout repeats) ≈ {r['seconds_paper']:.0f} s/case, extrapolated linearly")
    rounds = s.get("rounds", 1)
    lines += ["", (f"s/case: wall time, the fastest of {rounds} round-robin rounds (all in the JSON); "
                   if rounds > 1 else "s/case: wall time of one run; ")
              + "CPU s: the process's CPU time over the same span (all threads; less sensitive to other jobs "
              "than wall time, though waiting threads spin). Peak RSS: " + result["memory_method"] + ".",
              "Regenerate with `python benchmarks/inference/bench_inference.py "
              + " ".join(s["argv"]) + "`.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 48³ grid, roi 32, 1 TTA mirror (results go to <out>/quick)")
    ap.add_argument("--shape", type=int, nargs=3, default=None, help="case grid (default 240 240 155)")
    ap.add_argument("--roi", type=int, default=None, help="sliding-window size (default 128; quick 32)")
    ap.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap")
    ap.add_argument("--tta-mirrors", type=int, default=None,
                    help="mirrors actually run for the TTA rows (default 2, quick 1); fewer than 8 are "
                         "extrapolated to 8")
    ap.add_argument("--entries", default=",".join(ENTRIES), help="entries (submissions/<entry>.yaml)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {', '.join(VARIANTS)}")
    ap.add_argument("--explore", default="isensee2017",
                    help=f"entries that also run the variants beyond {', '.join(COMMON_VARIANTS)}")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every row this many times, round-robin, and keep each row's fastest run")
    ap.add_argument("--seed", type=int, default=0, help="synthetic case seed")
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                    help="run the MONAI baseline row (--no-baseline: compare variants only)")
    ap.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                    help="each row in a fresh process (its own peak RSS)")
    ap.add_argument("--submissions", type=Path, default=REPO / "submissions", help="entry YAML folder")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "brats-benchmarks",
                    help="folder for the synthetic case and label maps (reused)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default benchmarks/results, quick: benchmarks/results/quick)")
    args = ap.parse_args(argv)
    shape = tuple(args.shape or ((48, 48, 48) if args.quick else (240, 240, 155)))
    roi = args.roi or (32 if args.quick else 128)
    mirrors = args.tta_mirrors or (1 if args.quick else 2)
    if not 1 <= mirrors <= ALL_MIRRORS:
        ap.error(f"--tta-mirrors must be 1..{ALL_MIRRORS}")
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    out = args.out or REPO / "benchmarks" / "results" / ("quick" if args.quick else "")

    env = {**environment(args.threads), "torch": torch.__version__}
    case_dir = case_folder(args.work, shape, args.seed)  # type: ignore[arg-type]
    labels_dir = args.work / "inference-labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    rows, notes = plan(args.entries.split(","), variants, args.explore.split(","), mirrors,
                       args.submissions, args.baseline)
    runs: dict[str, list[dict]] = {row.name: [] for row in rows}
    for round_ in range(args.rounds):
        for row in tqdm(rows, desc=f"inference rows, round {round_ + 1}/{args.rounds}", unit="row"):
            labels_path = labels_dir / f"{row.name.replace(' ', '_').replace(':', '')}.npy"
            task = (row, str(case_dir), str(labels_path), args.threads, roi, args.overlap,
                    str(args.submissions))
            try:
                if args.isolate:
                    with ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
                        done = pool.submit(run_row, *task).result()
                else:
                    done = run_row(*task)
            except Exception as exc:  # noqa: BLE001  (report and go on: an entry under construction)
                done = {**asdict(row), "error": f"{type(exc).__name__}: {exc}"}
            done["labels_path"] = task[2]
            tqdm.write(f"{row.name}: " + (done["error"] if "error" in done else
                                          f"{done['seconds']:.1f} s, peak {done['peak_rss_mib']:.0f} MiB"))
            runs[row.name].append(done)
    results = [best_of(runs[row.name]) for row in rows]
    extrapolate(results)
    for r in results:
        if "seconds_per_pass" in r:
            paper = load_config(args.submissions / f"{r['entry']}.yaml").inference
            passes = (len(mirror_combinations(paper.mirror_axes, paper.num_mirrors))
                      * (paper.repeats if paper.test_time_dropout else 1))
            if passes > ALL_MIRRORS:
                r["paper_passes"] = passes
                r["seconds_paper"] = r["seconds_8_mirrors"] + (passes - ALL_MIRRORS) * r["seconds_per_pass"]
    by_name = {r["name"]: r for r in results if "error" not in r}
    agreements = {}
    for entry in dict.fromkeys(r["entry"] for r in results if r["entry"]):
        fp32, bf16 = by_name.get(f"{entry} fp32"), by_name.get(f"{entry} bf16")
        if fp32 and bf16:
            agreements[entry] = agreement(np.load(fp32["labels_path"]), np.load(bf16["labels_path"]))
    result = {
        "benchmark": "inference",
        "environment": {**env, "load_average_after": load_average()},
        "settings": {"quick": args.quick, "shape": list(shape), "roi": roi, "overlap": args.overlap,
                     "tta_mirrors": mirrors, "seed": args.seed, "variants": variants, "rounds": args.rounds,
                     "isolated_processes": args.isolate, "argv": raw_argv},
        "memory_method": ("ru_maxrss of the row's own process" if args.isolate else
                          "ru_maxrss of the one process running every row (a running maximum)"),
        "notes": notes,
        "rows": results,
        "bf16_vs_fp32": agreements,
    }
    result["targets"] = targets(result)
    write_result(out, "inference", result, write_markdown(result))
    print(f"wrote {out}/inference.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
