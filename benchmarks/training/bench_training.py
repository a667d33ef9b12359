"""Benchmark training steps (forward + loss + backward + Adam) of every registered network.

Usage::

    python benchmarks/training/bench_training.py [--device cpu|cuda] [--full] [--steps N]
                                                 [--warmup W] [--compile] [--networks a,b]
                                                 [--precisions fp32,bf16,fp16] [--out benchmarks/results]

For each network in ``brats.nets.NETWORKS`` (after importing :data:`DEFAULT_IMPORTS` where they
exist, whose networks and losses register themselves; more with ``--import``) and each precision:

* ``fp32``: plain float32;
* ``bf16``: ``torch.autocast(device, dtype=torch.bfloat16)`` around forward and loss;
* ``fp16`` (CUDA only): ``torch.autocast(device, dtype=torch.float16)`` plus ``GradScaler``;

and, with ``--compile``, each of them again on ``torch.compile(model)``, it times ``--steps``
training steps after ``--warmup`` untimed ones and reports the median seconds per step,
iterations/s, samples/s and the peak memory: ``torch.cuda.max_memory_allocated`` on CUDA, and on
CPU the growth of the resident set over its value before the steps (the kernel's high-water mark
``VmHWM`` is reset through ``/proc/self/clear_refs``; where that is not allowed, the growth of
``ru_maxrss``, which only sees new process-wide peaks).

Input sizes come from :data:`SPECS` (the paper's patch and batch, e.g. Isensee: 128³, batch 2,
with ``--full``; a small patch otherwise so a CPU run takes minutes). Unlisted networks get
:data:`DEFAULT_SPEC`. Inputs are random normal images and random class-index targets shaped like
the network's output. Results go to ``<out>/training_<device>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import importlib
import json
import multiprocessing
import platform
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_model, git_commit  # noqa: E402
from brats.losses import LOSS_TARGETS, TARGET_CHANNELS, build_loss  # noqa: E402
from brats.nets import NETWORKS, build_network  # noqa: E402

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class InputSpec:
    """How to train one network in the benchmark.

    Attributes:
        patch, batch: the paper's training patch (X, Y, Z) and batch size (``--full``).
        small_patch, small_batch: the quick-run size (default; meant for CPUs).
        loss: registered loss name; the network gets ``num_classes`` from its target kind.
        lr: Adam learning rate (timing does not depend on it).
        kwargs: extra network arguments.
        source: where the sizes come from.
    """

    patch: Shape3
    batch: int
    small_patch: Shape3 = (64, 64, 64)
    small_batch: int = 1
    loss: str = "soft_dice"
    lr: float = 5e-4
    kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = ""


SPECS: dict[str, InputSpec] = {
    "isensee_unet": InputSpec(patch=(128, 128, 128), batch=2, small_patch=(64, 64, 64), small_batch=1,
                              loss="soft_dice", lr=5e-4,
                              source="MIC-DKFZ/BraTS2017 @dfc244c train_network.py: 128³ patches, "
                                     "batch 2, Adam 5e-4"),
    # Wang et al.: (B, 4, D, H, W) slabs, D = slice axis of the view, output D − 8 slices (cascade.nets)
    **{name: InputSpec(patch=(19, hw, hw), batch=5, small_patch=(19, small, small), small_batch=1,
                       loss="wang_dice", lr=1e-3, kwargs={"num_classes": 2},
                       source=f"taigw/brats17 @d44297e config17: 19×{hw}×{hw} slabs, batch 5, Adam 1e-3")
       for name, hw, small in (("wang_wnet", 144, 48), ("wang_tnet", 96, 48), ("wang_enet", 64, 32))},
}
#: Modules imported first, when present, so method packages register their networks and losses.
DEFAULT_IMPORTS = ("cascade.nets", "cascade.losses", "ensemble.nets", "ensemble.losses")
DEFAULT_SPEC = InputSpec(patch=(64, 64, 64), batch=2, small_patch=(32, 32, 32), small_batch=1,
                         source="default (network not in SPECS)")


# ------------------------------------------------------------------------------------------
# memory
# ------------------------------------------------------------------------------------------

def _proc_status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class CpuPeakMemory:
    """Peak resident-set growth over a block, without psutil (Linux ``/proc``, else ``resource``)."""

    def __enter__(self) -> CpuPeakMemory:
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
            self.method = "VmHWM − VmRSS before (clear_refs reset)"
            self.base = _proc_status_kib("VmRSS")
        except OSError:
            self.method, self.base = "ru_maxrss growth (process-wide high-water mark)", None
        if self.base is None:
            self.method = "ru_maxrss growth (process-wide high-water mark)"
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc: object) -> None:
        if self.method.startswith("VmHWM"):
            peak = _proc_status_kib("VmHWM") or 0
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak_mib = max(peak - self.base, 0) / 1024
        self.absolute_mib = peak / 1024


# ------------------------------------------------------------------------------------------
# one configuration
# ------------------------------------------------------------------------------------------

def _output_shape(name: str, kwargs: dict, x_shape: tuple[int, ...], device: str) -> tuple[int, ...]:
    """The network's output shape for ``x_shape``: traced on the meta device, else one real forward."""
    try:
        with torch.device("meta"):
            return tuple(build_network(name, **kwargs).eval()(torch.empty(x_shape)).shape)
    except Exception:  # noqa: BLE001  (ops without meta kernels)
        net = build_network(name, **kwargs).to(device).eval()
        with torch.no_grad():
            out = net(torch.zeros((1, *x_shape[1:]), device=device))
        return (x_shape[0], *out.shape[1:])


def import_registering_modules(modules: list[str]) -> None:
    """Import each module so its networks/losses register; skip absent ones, raise for broken ones."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
                raise


def _init_worker(threads: int | None, modules: list[str]) -> None:
    if threads:
        torch.set_num_threads(threads)
    import_registering_modules(modules)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_config(name: str, spec: InputSpec, device: str, full: bool, precision: str, compiled: bool,
                 steps: int, warmup: int, seed: int = 0) -> dict:
    """Time ``steps`` training steps of network ``name`` in one precision/compile mode."""
    patch, batch = (spec.patch, spec.batch) if full else (spec.small_patch, spec.small_batch)
    target_kind = LOSS_TARGETS[spec.loss]
    kwargs = {"num_classes": TARGET_CHANNELS[target_kind], **spec.kwargs}
    row: dict[str, Any] = {
        "network": name, "precision": precision, "compiled": compiled, "loss": spec.loss,
        "batch": batch, "patch": list(patch), "network_kwargs": kwargs, "spec_source": spec.source,
    }
    torch.manual_seed(seed)
    model = build_network(name, **kwargs).to(device).train()
    row["parameters"] = sum(p.numel() for p in model.parameters())
    in_channels = getattr(model, "in_channels", 4)
    x = torch.randn(batch, in_channels, *patch, device=device)
    out_shape = _output_shape(name, kwargs, tuple(x.shape), device)
    row["output_shape"] = list(out_shape)
    classes = TARGET_CHANNELS["labels"] if target_kind == "regions" else out_shape[1]  # class indices
    y = torch.randint(0, classes, (batch, *out_shape[2:]), device=device)
    loss_fn = build_loss(spec.loss).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, betas=(0.9, 0.999))
    net = torch.compile(model) if compiled else model
    amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device) if precision == "fp16" else None

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        ctx = torch.autocast(device, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
        with ctx:
            loss = loss_fn(net(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    memory = CpuPeakMemory() if device == "cpu" else contextlib.nullcontext()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        row["memory_before_mib"] = torch.cuda.memory_allocated() / 2**20
    times: list[float] = []
    with memory:
        for i in range(warmup + steps):
            _sync(device)
            t0 = time.perf_counter()
            loss_value = step()
            _sync(device)
            dt = time.perf_counter() - t0
            if i == 0:
                row["first_step_s"] = dt
            if i >= warmup:
                times.append(dt)
    median = statistics.median(times)
    row.update({
        "steps": steps, "warmup": warmup, "seconds_per_step_median": median,
        "seconds_per_step_mean": statistics.fmean(times), "seconds_per_step_min": min(times),
        "iterations_per_s": 1.0 / median, "samples_per_s": batch / median,
        "voxels_per_s": batch * patch[0] * patch[1] * patch[2] / median, "final_loss": loss_value,
    })
    if device == "cuda":
        row["peak_memory_mib"] = torch.cuda.max_memory_allocated() / 2**20
        row["memory_method"] = "torch.cuda.max_memory_allocated"
    else:
        row["peak_memory_mib"] = memory.peak_mib  # type: ignore[union-attr]
        row["peak_rss_mib"] = memory.absolute_mib  # type: ignore[union-attr]
        row["memory_method"] = memory.method  # type: ignore[union-attr]
    return row


# ------------------------------------------------------------------------------------------
# environment and report
# ------------------------------------------------------------------------------------------

def cpu_busy_fraction(seconds: float = 2.0) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` (from ``/proc/stat``): other processes' load when
    measured before the benchmark starts. None where ``/proc/stat`` is unreadable."""
    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle
    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1.0 - (idle1 - idle0) / max(total1 - total0, 1), 3)


def env_load() -> list[float] | None:
    """The system load average (1, 5, 15 min), or None where the OS has none."""
    import os
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def environment(device: str) -> dict:
    import os
    env = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} logical CPUs",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15min": env_load(),
        "cpu_busy_before": cpu_busy_fraction() if device == "cpu" else None,
        "git_commit": git_commit(),
        "device": device,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update({"gpu": torch.cuda.get_device_name(0), "gpu_memory_gib": props.total_memory / 2**30,
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                    "cudnn_benchmark": torch.backends.cudnn.benchmark})
    return env


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def write_markdown(result: dict, path: Path) -> None:
    env, s = result["environment"], result["settings"]
    device = env.get("gpu", env["machine"]) if env["device"] == "cuda" else env["machine"]
    load = env.get("load_average_1_5_15min")
    cuda = f", CUDA {env['cuda']}" if env["device"] == "cuda" else ""
    lines = [
        f"# Training-step benchmark ({env['device']})",
        "",
        f"* Date (UTC): {env['date_utc']}; git commit: {env['git_commit'] or 'n/a'}",
        f"* Device: {device}; {env['platform']}; torch {env['torch']} "
        f"(torch CPU threads: {env['torch_threads']}){cuda}",
        f"* Other load: {_percent(env.get('cpu_busy_before'))} of the CPUs busy in the 2 s before the "
        f"run; load average (1/5/15 min) before {load}, after {env.get('load_average_after')}. "
        "Other processes sharing the CPUs slow multi-threaded steps a lot; `min` is the least affected",
        f"* Sizes: {'paper (--full)' if s['full'] else 'small (quick run)'}; {s['steps']} timed steps "
        f"after {s['warmup']} warm-up steps; one step = forward + loss + backward + Adam",
        "",
        "| network | params | batch × patch | precision | compiled | s/step median | s/step min | it/s "
        "| samples/s | peak memory MiB | first step s | loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        shape = f"{r['batch']} × {'×'.join(map(str, r['patch']))}"
        if "error" in r:
            lines.append(f"| {r['network']} | | {shape} | {r['precision']} | {r['compiled']} | "
                         f"error: {r['error'][:80]} | | | | | | |")
            continue
        lines.append(
            f"| {r['network']} | {r['parameters']:,} | {shape} | {r['precision']} | "
            f"{'yes' if r['compiled'] else 'no'} | {r['seconds_per_step_median']:.3f} | "
            f"{r['seconds_per_step_min']:.3f} | "
            f"{r['iterations_per_s']:.3f} | {r['samples_per_s']:.3f} | {r['peak_memory_mib']:.0f} | "
            f"{r['first_step_s']:.2f} | {r['final_loss']:.4f} |")
    method = next((r["memory_method"] for r in result["results"] if "memory_method" in r), "")
    lines += ["", f"Peak memory: {method}.",
              "Each configuration ran in a fresh process." if s.get("isolated_processes") else
              "All configurations ran in one process.",
              "Regenerate with `"
              + " ".join(["python benchmarks/training/bench_training.py", *s["argv"]]) + "`.",
              ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--device", choices=("cpu", "cuda"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--full", action="store_true", help="the paper's patch and batch sizes (for a GPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 5 on CPU, 20 on CUDA)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps first (default 1 on CPU, 3 on CUDA)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    ap.add_argument("--networks", default=None, help="comma-separated subset of the registered networks")
    ap.add_argument("--precisions", default=None,
                    help="comma-separated from fp32, bf16, fp16 "
                         "(default fp32,bf16 on CPU; all three on CUDA)")
    ap.add_argument("--import", dest="imports", action="append", default=list(DEFAULT_IMPORTS),
                    help="module to import so its networks and losses register (repeatable; "
                         f"always tried: {', '.join(DEFAULT_IMPORTS)})")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                    help="run each configuration in a fresh process (default: on for CPU, where freed "
                         "memory stays in the process and would hide the next configuration's peak)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results",
                    help="folder for training_<device>.json and .md")
    args = ap.parse_args(argv)
    raw_argv = list(sys.argv[1:] if argv is None else argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    import_registering_modules(args.imports)
    cpu = args.device == "cpu"
    isolate = cpu if args.isolate is None else args.isolate
    steps = args.steps or (5 if cpu else 20)
    warmup = args.warmup if args.warmup is not None else (1 if cpu else 3)
    precisions = (args.precisions or ("fp32,bf16" if cpu else "fp32,bf16,fp16")).split(",")
    if cpu and "fp16" in precisions:
        ap.error("fp16 with GradScaler needs CUDA; use fp32 or bf16 on CPU")
    networks = args.networks.split(",") if args.networks else list(NETWORKS)
    unknown = [n for n in networks if n not in NETWORKS]
    if unknown:
        ap.error(f"unknown networks {unknown}; registered: {', '.join(NETWORKS)}")

    env = environment(args.device)
    results = []
    for name in networks:
        spec = SPECS.get(name, DEFAULT_SPEC)
        for compiled in ([False, True] if args.compile else [False]):
            for precision in precisions:
                label = f"{name} {precision}{' compiled' if compiled else ''}"
                config = (name, spec, args.device, args.full, precision, compiled, steps,
                          warmup + (2 if compiled else 0))
                try:
                    if isolate:
                        # non-daemonic spawn worker: torch.compile may start its own processes
                        with ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), _init_worker,
                                                 (args.threads, args.imports)) as pool:
                            row = pool.submit(bench_config, *config).result()
                    else:
                        row = bench_config(*config)
                except Exception as exc:  # noqa: BLE001  (report and go on: OOM, missing kernels, ...)
                    row = {"network": name, "precision": precision, "compiled": compiled,
                           "batch": spec.batch if args.full else spec.small_batch,
                           "patch": list(spec.patch if args.full else spec.small_patch),
                           "error": f"{type(exc).__name__}: {exc}"}
                    print(f"{label}: {row['error']}", flush=True)
                else:
                    print(f"{label}: {row['seconds_per_step_median']:.3f} s/step, "
                          f"{row['iterations_per_s']:.3f} it/s, peak {row['peak_memory_mib']:.0f} MiB, "
                          f"loss {row['final_loss']:.4f}", flush=True)
                results.append(row)
                gc.collect()
                if args.device == "cuda":
                    torch.cuda.empty_cache()

    result = {
        "benchmark": "training",
        "environment": {**env, "load_average_after": env_load()},
        "settings": {"full": args.full, "steps": steps, "warmup": warmup, "compile": args.compile,
                     "precisions": precisions, "isolated_processes": isolate, "argv": raw_argv},
        "specs": {n: asdict(SPECS.get(n, DEFAULT_SPEC)) for n in networks},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"training_{args.device}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_markdown(result, stem.with_suffix(".md"))
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
