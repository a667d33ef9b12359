"""The prepared GPU check: everything the project wants measured the moment a GPU is lent, in one
run sized to take under 8 minutes on an H200 at paper size (each part capped in time).

Usage::

    python benchmarks/gpu_check.py --out benchmarks/results/gpu        # on the GPU, paper sizes
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu  # smoke test, seconds

Per entry (Isensee 2×4×128³ from 160×192×160 regions; Wang's WNet slabs 19×144×144 × 5 in the
three views, TNet 19×96×96, ENet 19×64×64; DeepMedic 57³ context patches × 10; EMMA's FCN and
U-Net 96³ × 2), each from its own ``submissions/<entry>.yaml`` member config:

1. **augmentation** — ms per batch of ``PatchDataset.to_device`` (device backend: the copy of a
   pinned, collated batch and the batched augmentation; target ≤ 20 ms for Isensee's 2×4×128³);
2. **training** — iterations/s of the member's real training step (forward, loss, L1/L2,
   backward, optimiser) on real batches already on the device, in fp32, bf16 autocast (AMP) and
   AMP + ``torch.compile``, with the peak GPU memory (``torch.cuda.max_memory_allocated``);
3. **data-bound** — Isensee's steps (AMP) fed by the real loader with ``--workers`` worker
   processes against the same steps on pre-generated tensors
   (``benchmarks/training/bench_data_bound.py``; target ≤ 5 % slower);
4. **prediction** — one full 240×240×155 case through ``predict_case`` for each entry with random
   weights, fp32 and bf16, TTA off; Isensee also with the paper's 8 mirrors × 4 dropout passes.

Each part has a time cap (``--budget`` seconds in all, shared out by :data:`SHARES`); an item
that would start past its part's cap is skipped and listed. The synthetic data (``brats.synth``,
``--cases`` training cases of 240×240×155, prepared into a cache) are made in a temporary folder.
Results: ``<out>/gpu_check.json`` and ``.md``.

**Packages on the GPU machine.** It has torch, numpy, scipy, pandas, PyYAML, tqdm, threadpoolctl,
matplotlib and scikit-learn, but not ``monai``, ``nibabel`` or ``nilearn`` (the synthetic data's
MNI152 templates ship inside nilearn's wheel; all three are pure-Python wheels). Fetch them here,
in the repository root, and carry them (the ``.whl`` folder travels with the working tree)::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux2014_x86_64 -d .whl monai==1.6.1 nibabel==5.4.2 nilearn==0.14.1

and start the run there with::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
    PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out "$OUT"

then copy ``gpu_check.json`` and ``.md`` into ``benchmarks/results/gpu/``. A missing package
stops the script at once with the package's name and these instructions.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Importable module → the package that provides it (what the GPU machine may lack).
REQUIRED = {"numpy": "numpy", "scipy": "scipy", "torch": "torch", "yaml": "pyyaml", "pandas": "pandas",
            "tqdm": "tqdm", "threadpoolctl": "threadpoolctl", "nibabel": "nibabel==5.4.2",
            "monai": "monai==1.6.1", "nilearn": "nilearn==0.14.1", "matplotlib": "matplotlib"}


def missing_packages() -> list[str]:
    """The packages of :data:`REQUIRED` whose module cannot be found."""
    return [package for module, package in REQUIRED.items() if importlib.util.find_spec(module) is None]


def require_packages() -> None:
    """Stop with the missing packages' names and how to carry them, before importing any of them."""
    missing = " ".join(missing_packages())
    if missing:
        raise SystemExit(
            f"gpu_check: missing Python package(s): {missing}.\n"
            "Carry them as wheels (see the top of benchmarks/gpu_check.py): here, `python3 -m pip "
            "download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "
            f"--platform manylinux2014_x86_64 -d .whl {missing}`; there, `python3 -m pip install "
            "--no-index --no-deps --target /tmp/site .whl/*.whl` and PYTHONPATH=/tmp/site.")


if __name__ == "__main__":
    require_packages()

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    environment,
    header_lines,
    load_average,
    met_cell,
    target_row,
    write_result,
)
from benchmarks.data.bench_data import datasets  # noqa: E402
from benchmarks.training.bench_data_bound import (  # noqa: E402
    Stepper,
    data_bound_check,
    run_pregenerated,
    sync,
    training_dataset,
)
from brats.config import EntryConfig, import_package, load_config, to_dict  # noqa: E402
from brats.data.case import Case  # noqa: E402
from brats.data.layouts import discover  # noqa: E402
from brats.inference.predictor import Member, predict_case  # noqa: E402
from brats.nets import build_network  # noqa: E402
from brats.training.data import PatchDataset  # noqa: E402
from brats.training.trainer import Trainer, select_device, training_cases  # noqa: E402

ENTRIES = ("isensee2017", "wang2017", "kamnitsas2017")
#: (entry, member) whose augmentation is timed: every paper-size input kind, Wang in three views.
AUGMENTED = (("isensee2017", "model"), ("wang2017", "wnet_axial"), ("wang2017", "wnet_sagittal"),
             ("wang2017", "wnet_coronal"), ("kamnitsas2017", "deepmedic"),
             ("kamnitsas2017", "fcn_ce_uniform"), ("kamnitsas2017", "unet_ce_uniform"))
#: (entry, member) whose training step is timed, most wanted first.
TRAINED = (("isensee2017", "model"), ("wang2017", "wnet_axial"), ("kamnitsas2017", "deepmedic"),
           ("kamnitsas2017", "fcn_ce_uniform"), ("kamnitsas2017", "unet_ce_uniform"),
           ("wang2017", "tnet_axial"), ("wang2017", "enet_axial"))
#: Precision modes: name → (bf16 autocast, torch.compile).
MODES = {"fp32": (False, False), "amp": (True, False), "amp+compile": (True, True)}
#: Share of ``--budget`` each part may use (data preparation takes what it needs first).
SHARES = {"augmentation": 0.08, "training": 0.45, "data_bound": 0.22, "prediction": 0.25}
#: Seconds a compiled row may take beyond its steps (the first compile); not started with less left.
COMPILE_RESERVE_S = 90.0
AUGMENT_TARGET_MS = 20.0
SLOWDOWN_TARGET = 0.05


class Budget:
    """Time caps per part: ``left(part)`` is the part's cap minus its time spent so far."""

    def __init__(self, total_s: float) -> None:
        self.caps = {part: share * total_s for part, share in SHARES.items()}
        self.started: dict[str, float] = {}

    def start(self, part: str) -> None:
        """Start the clock of ``part``."""
        self.started[part] = time.perf_counter()

    def left(self, part: str) -> float:
        """Seconds ``part`` may still use (negative: past its cap)."""
        return self.caps[part] - (time.perf_counter() - self.started[part])


def member_config(entry: str, member: str, quick: bool) -> EntryConfig | None:
    """A member's config from ``submissions/<entry>.yaml`` (the ``quick`` profile if asked); None
    when the entry's file or the member is absent."""
    path = REPO / "submissions" / f"{entry}.yaml"
    if not path.is_file():
        return None
    config = load_config(path, "quick" if quick else None)
    import_package(config.package)
    return config.member(member) if member in config.member_names else None


def batches(config: EntryConfig, cache_dir: Path, case_ids: list[str], device: torch.device, count: int
            ) -> tuple[PatchDataset, list[dict[str, torch.Tensor]]]:
    """The member's training dataset and ``count`` collated batches as the loader hands them over
    (pinned on CUDA)."""
    size = config.data.batch_size
    dataset = training_dataset(config, cache_dir, case_ids, count * size)
    made = DataLoader(dataset, batch_size=size, collate_fn=dataset.collate_fn,
                      pin_memory=device.type == "cuda")
    return dataset, list(made)


def time_augmentation(config: EntryConfig, cache_dir: Path, case_ids: list[str], device: torch.device,
                      reps: int) -> dict[str, Any]:
    """ms per batch of ``to_device`` (copy + batched augmentation), median over ``reps`` after one."""
    dataset, (batch,) = batches(config, cache_dir, case_ids, device, 1)
    image, target = dataset.to_device(batch, device)
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        dataset.to_device(batch, device)
        sync(device)
        times.append(1000 * (time.perf_counter() - start))
    return {"ms_median": statistics.median(times), "ms_min": min(times), "image": list(image.shape),
            "target": list(target.shape), "augmentation": config.data.augmentation,
            "backend": config.data.augmentation_backend}


def time_training(config: EntryConfig, cache_dir: Path, case_ids: list[str], device: torch.device,
                  mode: str, steps: int, warmup: int) -> dict[str, Any]:
    """Iterations/s of the member's step in ``mode`` on 2 real batches (cycled) on the device."""
    amp, compiled = MODES[mode]
    dataset, loaded = batches(config, cache_dir, case_ids, device, 2)
    tensors = [dataset.to_device(b, device) for b in loaded]
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    step = Stepper(config, cache_dir, device, amp, compiled)
    start = time.perf_counter()
    run_pregenerated(step, tensors[:1])
    first = time.perf_counter() - start
    run_pregenerated(step, [tensors[i % 2] for i in range(warmup)])
    times = run_pregenerated(step, [tensors[i % 2] for i in range(steps)])
    median = statistics.median(times)
    return {"mode": mode, "batch": list(tensors[0][0].shape), "first_step_s": first, "s_per_step": median,
            "it_per_s": 1 / median, "steps": steps,
            "parameters": sum(p.numel() for p in step.network.parameters()),
            "peak_memory_gib": (torch.cuda.max_memory_allocated(device) / 2**30
                                if device.type == "cuda" else None)}


def entry_members(entry: str, device: torch.device, amp: bool, mirrors: int, repeats: int, quick: bool
                  ) -> list[Member]:
    """Every member of ``entry`` with random weights on ``device``, TTA as asked."""
    path = REPO / "submissions" / f"{entry}.yaml"
    config = load_config(path, "quick" if quick else None)
    import_package(config.package)
    members = []
    for name in config.member_names:
        cfg = config.member(name)
        trainer = Trainer(cfg, path.parent, path.parent, device=str(device), progress=False)
        network = build_network(cfg.network.name, in_channels=4, num_classes=trainer.num_outputs,
                                **cfg.network.kwargs).to(device).eval()
        changes: dict[str, Any] = {"amp": amp, "num_mirrors": mirrors, "repeats": repeats}
        if mirrors > 1:
            changes["mirror_axes"] = (0, 1, 2)
        if not (mirrors > 1 and repeats > 1):
            changes["test_time_dropout"] = False
        members.append(Member(name, network, replace(cfg.inference, **changes), trainer.target,
                              cfg.data.intensity, path, to_dict(cfg)))
    return members


def time_prediction(entry: str, case: Case, device: torch.device, amp: bool, mirrors: int, repeats: int,
                    quick: bool) -> dict[str, Any]:
    """Seconds to predict one case with the entry's members (random weights)."""
    torch.manual_seed(0)
    members = entry_members(entry, device, amp, mirrors, repeats, quick)
    sync(device)
    start = time.perf_counter()
    labels, _, _ = predict_case(members, case, device)
    sync(device)
    return {"entry": entry, "precision": "bf16" if amp else "fp32", "mirrors": mirrors,
            "repeats": repeats, "members": len(members), "seconds": time.perf_counter() - start,
            "shape": list(labels.shape)}


def guarded(rows: list[dict], label: dict[str, Any], fn, *args) -> None:
    """Append ``fn(*args)`` (with ``label``) to ``rows``, or the error it raised (OOM, kernels …)."""
    try:
        rows.append({**label, **fn(*args)})
    except Exception as exc:  # noqa: BLE001  (report and go on)
        rows.append({**label, "error": f"{type(exc).__name__}: {exc}"[:300]})
    print(rows[-1], flush=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def part_augmentation(ctx: dict, budget: Budget) -> tuple[list[dict], list[str]]:
    """Part 1: the rows of :func:`time_augmentation` for :data:`AUGMENTED`, and what was skipped."""
    rows, skipped = [], []
    budget.start("augmentation")
    for entry, member in AUGMENTED:
        config = member_config(entry, member, ctx["quick"])
        if config is None:
            skipped.append(f"augmentation {entry}/{member}: no such config")
        elif budget.left("augmentation") <= 0:
            skipped.append(f"augmentation {entry}/{member}: time cap")
        else:
            guarded(rows, {"entry": entry, "member": member}, time_augmentation, config, ctx["cache"],
                    ctx["ids"], ctx["device"], ctx["reps"])
    return rows, skipped


def part_training(ctx: dict, budget: Budget) -> tuple[list[dict], list[str]]:
    """Part 2: :func:`time_training` for :data:`TRAINED` in every mode (compiled rows last)."""
    rows, skipped = [], []
    budget.start("training")
    modes = [m for m in MODES if ctx["compile"] or not MODES[m][1]]
    if len(modes) < len(MODES):
        skipped.append("every amp+compile training row: compile off (--quick or --no-compile)")
    for mode in modes:
        for entry, member in TRAINED:
            config = member_config(entry, member, ctx["quick"])
            reserve = COMPILE_RESERVE_S if MODES[mode][1] else 0.0
            if config is None:
                skipped.append(f"training {entry}/{member}: no such config")
            elif budget.left("training") <= reserve:
                skipped.append(f"training {entry}/{member} {mode}: time cap")
            else:
                guarded(rows, {"entry": entry, "member": member, "network": config.network.name},
                        time_training, config, ctx["cache"], ctx["ids"], ctx["device"], mode,
                        ctx["steps"], ctx["warmup"])
    return rows, skipped


def part_data_bound(ctx: dict, budget: Budget) -> tuple[dict, list[str]]:
    """Part 3: Isensee's data-bound check with AMP and ``ctx["workers"]`` loader workers."""
    budget.start("data_bound")
    config = member_config("isensee2017", "model", ctx["quick"])
    out: list[dict] = []
    guarded(out, {"entry": "isensee2017", "workers": ctx["workers"], "precision": "amp"},
            data_bound_check, config, ctx["cache"], ctx["ids"], ctx["device"], ctx["bound_steps"],
            ctx["warmup"], ctx["workers"], True)
    row = out[0]
    row.pop("seconds", None)
    late = budget.left("data_bound") < 0
    return row, ["data-bound check ran past its cap"] if late else []


def part_prediction(ctx: dict, budget: Budget) -> tuple[list[dict], list[str]]:
    """Part 4: one case predicted by each entry in bf16 and fp32 (and Isensee's paper TTA)."""
    rows, skipped = [], []
    budget.start("prediction")
    case = discover(ctx["nifti"])[0]
    plans = [(entry, amp, 1, 1) for amp in (True, False) for entry in ENTRIES]
    if not ctx["quick"]:
        plans.append(("isensee2017", True, 8, 4))
    for entry, amp, mirrors, repeats in plans:
        if not (REPO / "submissions" / f"{entry}.yaml").is_file():
            skipped.append(f"prediction {entry}: no config")
        elif budget.left("prediction") <= 0:
            skipped.append(f"prediction {entry} {'bf16' if amp else 'fp32'} ×{mirrors * repeats}: time cap")
        else:
            guarded(rows, {}, time_prediction, entry, case, ctx["device"], amp, mirrors, repeats,
                    ctx["quick"])
    return rows, skipped


def targets(result: dict) -> list[dict]:
    cuda = result["settings"]["device"] == "cuda" and not result["settings"]["quick"]
    aug = next((r for r in result["augmentation"] if r["entry"] == "isensee2017" and "error" not in r),
               None)
    bound = result["data_bound"]
    ms = None if aug is None else aug["ms_median"]
    slowdown = bound.get("slowdown")
    shape = "×".join(map(str, aug["image"])) if aug else "2×4×128³"
    rows = [target_row("gpu", f"isensee2017 augmentation of a {shape} batch on the device", ms, "ms",
                       f"≤ {AUGMENT_TARGET_MS:g}",
                       None if not cuda or ms is None else ms <= AUGMENT_TARGET_MS),
            target_row("gpu", f"isensee2017 real loader ({bound.get('workers')} workers) vs pre-generated "
                       "tensors, AMP: slowdown", slowdown, "fraction", f"≤ {100 * SLOWDOWN_TARGET:g} %",
                       None if not cuda or slowdown is None else slowdown <= SLOWDOWN_TARGET)]
    for r in result["training"]:
        if "error" not in r:
            name = f"{r['entry']}/{r['member']} {r['mode']} {'×'.join(map(str, r['batch']))}: it/s"
            rows.append(target_row("gpu", name, r["it_per_s"], "it/s", "—", None))
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def write_markdown(result: dict) -> list[str]:
    s = result["settings"]
    lines = header_lines(f"GPU check ({result['environment'].get('gpu') or s['device']})",
                         result["environment"], s["quick"])
    lines += [f"* torch {result['environment']['torch']}; budget {s['budget_s']:.0f} s; total "
              f"{result['seconds_total']:.0f} s; data preparation {result['seconds_data']:.0f} s "
              f"({s['cases']} cases of {'×'.join(map(str, s['shape']))})", "",
              "| target | measured | goal | met |", "|---|---|---|---|"]
    for row in result["targets"][:2]:
        value = (_fmt(row["measured"], ".1f") + " ms" if row["unit"] == "ms"
                 else _fmt(None if row["measured"] is None else 100 * row["measured"], ".1f") + " %")
        met = met_cell(row["met"])
        lines.append(f"| {row['target']} | {value} | {row['goal']} | {met} |")
    lines += ["", "## Augmentation on the device (`PatchDataset.to_device`, pinned batch)", "",
              "| entry | member | batch (image) | ms median | ms min |", "|---|---|---|---|---|"]
    for r in result["augmentation"]:
        if "error" in r:
            lines.append(f"| {r['entry']} | {r['member']} | error: {r['error'][:80]} | | |")
        else:
            lines.append(f"| {r['entry']} | {r['member']} | {'×'.join(map(str, r['image']))} | "
                         f"{r['ms_median']:.1f} | {r['ms_min']:.1f} |")
    lines += ["", "## Training steps (real batches on the device)", "",
              "| entry | member | mode | batch | it/s | s/step | first step s | peak GiB |",
              "|---|---|---|---|---|---|---|---|"]
    for r in result["training"]:
        if "error" in r:
            lines.append(f"| {r['entry']} | {r['member']} | | error: {r['error'][:80]} | | | | |")
        else:
            lines.append(f"| {r['entry']} | {r['member']} | {r['mode']} | {'×'.join(map(str, r['batch']))} | "
                         f"{r['it_per_s']:.2f} | {r['s_per_step']:.3f} | {r['first_step_s']:.1f} | "
                         f"{_fmt(r['peak_memory_gib'], '.2f')} |")
    b = result["data_bound"]
    lines += ["", "## Data-bound check (isensee2017, AMP)", ""]
    if "error" in b:
        lines.append(f"error: {b['error']}")
    else:
        lines += [f"{b['workers']} loader workers: {b['loader_s']:.3f} s/step against "
                  f"{b['pregenerated_s']:.3f} on pre-generated tensors ({100 * b['slowdown']:+.1f} %); "
                  f"waiting {b['loader_wait_s']:.3f} s, `to_device` {b['to_device_s']:.3f} s per step "
                  f"(data share {100 * b['data_share']:.1f} %)."]
    lines += ["", "## One full case predicted (random weights)", "",
              "| entry | precision | passes | members | s |", "|---|---|---|---|---|"]
    for r in result["prediction"]:
        if "error" in r:
            lines.append(f"| error: {r['error'][:80]} | | | | |")
        else:
            lines.append(f"| {r['entry']} | {r['precision']} | {r['mirrors']} mirrors × {r['repeats']} | "
                         f"{r['members']} | {r['seconds']:.1f} |")
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(result["skipped"]) + "."]
    lines += ["", "Regenerate with `python benchmarks/gpu_check.py " + " ".join(s["argv"]) + "`.", ""]
    return lines


def gpu_environment(device: torch.device) -> dict[str, Any]:
    """The GPU's name, memory and CUDA version (empty off CUDA)."""
    if device.type != "cuda":
        return {}
    props = torch.cuda.get_device_properties(device)
    return {"gpu": props.name, "gpu_memory_gib": props.total_memory / 2**30, "cuda": torch.version.cuda}


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: the entries' quick profiles on 48³ cases, one step each, no compile")
    ap.add_argument("--budget", type=float, default=None, help="seconds for the timed parts (default 330)")
    ap.add_argument("--cases", type=int, default=None, help="synthetic training cases (default 4, quick 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per row (default 10)")
    ap.add_argument("--workers", type=int, default=None,
                    help="loader workers of the data-bound check (default min(8, CPUs − 2), quick 1)")
    ap.add_argument("--no-compile", action="store_true", help="leave out the AMP + torch.compile rows")
    ap.add_argument("--work", type=Path, default=None, help="data folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu",
                    help="results folder (gpu_check.json and .md)")
    args = ap.parse_args(argv)
    device = select_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    quick = args.quick
    shape = (48, 48, 48) if quick else (240, 240, 155)
    cases = args.cases or (2 if quick else 4)
    cpus = os.cpu_count() or 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        nifti, cache = datasets(args.work or Path(tmp), shape, cases, 0, min(cases, cpus))
        ctx = {"quick": quick, "device": device, "cache": cache, "nifti": nifti, "ids": training_cases(cache),
               "reps": 2 if quick else 10, "steps": args.steps or (1 if quick else 10),
               "warmup": 1 if quick else 3, "bound_steps": 2 if quick else 40,
               "workers": args.workers or (1 if quick else min(8, max(1, cpus - 2))),
               "compile": not (quick or args.no_compile)}
        seconds_data = time.perf_counter() - started
        budget = Budget(args.budget or (60.0 if quick else 330.0))
        env = environment(torch.get_num_threads())
        augmentation, skip_a = part_augmentation(ctx, budget)
        training, skip_t = part_training(ctx, budget)
        bound, skip_b = part_data_bound(ctx, budget)
        prediction, skip_p = part_prediction(ctx, budget)
    result = {
        "benchmark": "gpu_check",
        "environment": {**env, **gpu_environment(device), "torch": torch.__version__,
                        "load_average_after": load_average()},
        "settings": {"quick": quick, "device": device.type, "shape": list(shape), "cases": cases,
                     "budget_s": args.budget or (60.0 if quick else 330.0), "steps": ctx["steps"],
                     "warmup": ctx["warmup"], "workers": ctx["workers"], "compile": ctx["compile"],
                     "argv": raw_argv},
        "seconds_data": seconds_data, "seconds_total": time.perf_counter() - started,
        "augmentation": augmentation, "training": training, "data_bound": bound, "prediction": prediction,
        "skipped": skip_a + skip_t + skip_b + skip_p,
    }
    result["targets"] = targets(result)
    write_result(args.out, "gpu_check", result, write_markdown(result))
    print(f"wrote {args.out}/gpu_check.json and .md in {result['seconds_total']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
