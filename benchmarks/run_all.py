"""Run every benchmark, each in its own process, and write one summary of the targets.

Usage::

    python benchmarks/run_all.py                  # every CPU benchmark, full size → benchmarks/results/
    python benchmarks/run_all.py --quick          # reduced smoke version → benchmarks/results/quick/
    python benchmarks/run_all.py --device cuda    # also the GPU benchmarks (skipped without GPU)
    python benchmarks/run_all.py --only data,evaluation

CPU benchmarks: ``inference``, ``data``, ``data_bound`` (training steps fed by the real loader
against pre-generated tensors, ``benchmarks/training/bench_data_bound.py``), ``evaluation`` and
``metrics``. GPU benchmarks, run with ``--device cuda`` and skipped, with a note, where torch sees
no CUDA device: ``training`` (``benchmarks/training/bench_training.py --device cuda --full``) and
``gpu_check`` (``benchmarks/gpu_check.py``, into ``<out>/gpu``). Each benchmark writes
``<out>/<name>.json`` and ``.md``; this script then writes ``<out>/summary.json`` and
``<out>/summary.md``: the machine, date and commit, every benchmark's status (run now, failed,
skipped, or an earlier result with its own date and commit) and one row per target (measured,
target, met yes/no).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import environment, header_lines, load_average, met_cell, target_row  # noqa: E402

CPU_BENCHMARKS = ("inference", "data", "data_bound", "evaluation", "metrics")
#: Benchmarks that need a CUDA device (run with ``--device cuda``, skipped without one).
GPU_BENCHMARKS = ("training", "gpu_check")
SCRIPTS = {
    "inference": "benchmarks/inference/bench_inference.py",
    "data": "benchmarks/data/bench_data.py",
    "data_bound": "benchmarks/training/bench_data_bound.py",
    "evaluation": "benchmarks/evaluation/bench_evaluation.py",
    "metrics": "benchmarks/metrics/bench_metrics.py",
    "training": "benchmarks/training/bench_training.py",
    "gpu_check": "benchmarks/gpu_check.py",
}
#: The JSON each benchmark writes into the results folder.
RESULT_FILES = {"inference": "inference.json", "data": "data.json", "data_bound": "data_bound_cpu.json",
                "evaluation": "evaluation.json", "metrics": "metrics.json",
                "training": "training_cuda.json", "gpu_check": "gpu/gpu_check.json"}


def arguments(name: str, args: argparse.Namespace, out: Path) -> list[str]:
    """Command-line arguments of one benchmark for this run."""
    quick = ["--quick"] if args.quick else []
    work = ["--work", str(args.work)] if args.work else []
    out = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    if name == "inference":
        tta = ["--tta-mirrors", str(args.tta_mirrors)] if args.tta_mirrors else []
        return [*quick, *work, *tta, "--threads", str(args.threads), "--rounds", str(args.rounds),
                "--out", str(out)]
    if name in ("data", "data_bound"):
        return [*quick, *work, "--out", str(out)]
    if name == "gpu_check":
        return [*quick, "--out", str(out / "gpu")]
    if name == "evaluation":
        return [*quick, *work, "--jobs", str(args.threads), "--out", str(out)]
    if name == "metrics":
        return ["--cases", "1" if args.quick else "3", "--reps", "1" if args.quick else "5",
                "--out", str(out)]
    steps = ["--steps", "2", "--warmup", "1"] if args.quick else []
    return ["--device", "cuda", "--full", *steps, "--out", str(out)]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def metrics_targets(result: dict) -> list[dict]:
    s = result["summary"]
    return [target_row("metrics", "case_metrics vs medpy hd95 (3 regions), speed-up",
                       s["speedup_mean_times"], "×", "—", None),
            target_row("metrics", "case_metrics, one full case", s["seconds_ours_mean"], "s", "—", None),
            target_row("metrics", "largest HD95 difference from medpy", s["max_abs_diff_hd95"], "mm", "0",
                       s["max_abs_diff_hd95"] == 0)]


def training_targets(result: dict) -> list[dict]:
    rows, gpu = [], result["environment"].get("gpu")
    for r in result["results"]:
        label = (f"{r['network']} {r['precision']}{' compiled' if r['compiled'] else ''}, "
                 f"{r['batch']} × {'×'.join(map(str, r['patch']))}: s/step ({gpu})")
        rows.append(target_row("training", label, r.get("seconds_per_step_median"), "s", "—", None)
                    if "error" not in r else
                    target_row("training", f"{label}: {r['error'][:60]}", None, "s", "—", None))
    return rows


def collect(out: Path, names: list[str]) -> tuple[list[dict], dict[str, dict]]:
    """Target rows and ``{benchmark: {date, commit, quick}}`` of the results present in ``out``."""
    rows, found = [], {}
    for name in names:
        path = out / RESULT_FILES[name]
        if not path.is_file():
            continue
        result = json.loads(path.read_text(encoding="utf-8"))
        env = result.get("environment", {})
        found[name] = {"date_utc": env.get("date_utc"), "git_commit": env.get("git_commit"),
                       "quick": result.get("settings", {}).get("quick", False)}
        if name == "metrics":
            rows += metrics_targets(result)
        elif name == "training":
            rows += training_targets(result)
        else:
            rows += result["targets"]
    return rows, found


def _measured(row: dict) -> str:
    value, unit = row["measured"], row["unit"]
    if value is None:
        return "—"
    if unit == "×":
        return f"{value:.2f}×"
    if unit == "fraction":
        return f"{100 * value:.2f} %"
    if unit == "s":
        return f"{value:.3g} s"
    return f"{value:.3g} {unit}"


def summary_markdown(env: dict, quick: bool, status: dict[str, dict], rows: list[dict], argv: list[str]
                     ) -> list[str]:
    lines = header_lines("Benchmark summary", env, quick)
    lines += ["| benchmark | status | seconds | result date (UTC) | result commit |", "|---|---|---|---|---|"]
    for name, s in status.items():
        seconds = f"{s['seconds']:.0f}" if s.get("seconds") is not None else "—"
        commit = (s.get("git_commit") or "—")[:12]
        lines.append(f"| {name} | {s['status']} | {seconds} | {s.get('date_utc') or '—'} | {commit} |")
    lines += ["", "| benchmark | target | measured | goal | met |", "|---|---|---|---|---|"]
    for row in rows:
        met = met_cell(row["met"])
        lines.append(f"| {row['benchmark']} | {row['target']} | {_measured(row)} | {row['goal']} | {met} |")
    lines += ["", "Details: `<benchmark>.md` next to this file. Regenerate with "
              "`" + " ".join(["python benchmarks/run_all.py", *argv]) + "`.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="reduced smoke version of every benchmark")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: also run the GPU benchmarks (skipped without a GPU)")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {', '.join(SCRIPTS)}")
    ap.add_argument("--threads", type=int, default=2,
                    help="CPU threads (inference) and processes (evaluation)")
    ap.add_argument("--tta-mirrors", type=int, default=None, help="mirrors run for the inference TTA rows")
    ap.add_argument("--rounds", type=int, default=1,
                    help="inference: run every row this many times, round-robin, keep the fastest")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for synthetic data shared by the benchmarks, reused between runs "
                         "(default: the benchmarks' own, $TMPDIR/brats-benchmarks)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default benchmarks/results, quick: benchmarks/results/quick)")
    args = ap.parse_args(argv)
    out = args.out or REPO / "benchmarks" / "results" / ("quick" if args.quick else "")
    names = list(CPU_BENCHMARKS) + (list(GPU_BENCHMARKS) if args.device == "cuda" else [])
    if args.only:
        names = args.only.split(",")
        unknown = sorted(set(names) - set(SCRIPTS))
        if unknown:
            ap.error(f"unknown benchmarks {unknown}; known: {', '.join(SCRIPTS)}")

    env = environment(args.threads)
    status: dict[str, dict] = {}
    for name in tqdm(names, desc="benchmarks", unit="benchmark"):
        if name in GPU_BENCHMARKS and not cuda_available():
            status[name] = {"status": "skipped: no CUDA device (torch.cuda.is_available() is False)"}
            tqdm.write(f"{name}: {status[name]['status']}")
            continue
        command = [sys.executable, str(REPO / SCRIPTS[name]), *arguments(name, args, out)]
        tqdm.write("$ " + " ".join(command))
        start = time.perf_counter()
        code = subprocess.run(command, cwd=REPO).returncode
        seconds = time.perf_counter() - start
        status[name] = {"status": "ran" if code == 0 else f"failed (exit code {code})", "seconds": seconds}
    for name in GPU_BENCHMARKS:
        status.setdefault(name, {"status": "not run: GPU benchmark, pass --device cuda"})
    rows, found = collect(out, list(SCRIPTS))
    for name, info in found.items():
        entry = status.setdefault(name, {"status": "earlier result"})
        if entry["status"].startswith(("skipped", "not run", "failed")):
            entry["status"] += "; earlier result shown"
        entry.update(info)
    env["load_average_after"] = load_average()
    summary = {"benchmark": "summary", "environment": env, "quick": args.quick, "argv": raw_argv,
               "status": status, "targets": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / "summary.md").write_text("\n".join(summary_markdown(env, args.quick, status, rows, raw_argv)),
                                    encoding="utf-8")
    print((out / "summary.md").read_text(encoding="utf-8"))
    failed = [n for n, s in status.items() if s["status"].startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
