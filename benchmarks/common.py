"""What every benchmark records about where it ran (CPU model, git commit, load), and how it writes
its JSON and Markdown."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str | None:
    """The checked-out commit of this repository, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def load_average() -> list[float] | None:
    """The system load average (1, 5, 15 min), or None where the OS has none."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (``ru_maxrss``), in MiB."""
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def environment(threads: int) -> dict:
    """Where and when a benchmark ran: machine, date, commit, versions, threads and load."""
    import numpy

    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} logical CPUs",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "threads": threads,
        "load_average_1_5_15min": load_average(),
        "git_commit": git_commit(),
    }


def header_lines(title: str, env: dict, quick: bool) -> list[str]:
    """The first lines of every benchmark's Markdown: title, date, commit, machine and load."""
    lines = [f"# {title}", "",
             f"* Date (UTC): {env['date_utc']}; git commit: {env['git_commit'] or 'n/a'}",
             f"* Machine: {env['machine']}; {env['platform']}; Python {env['python']}; "
             f"{env['threads']} thread(s)",
             f"* Load average (1/5/15 min) before: {env['load_average_1_5_15min']}, after: "
             f"{env.get('load_average_after')} (other jobs sharing the CPUs slow every row; compare "
             "the ratios, measured side by side in this run)"]
    if quick:
        lines.append("* **Quick run** (reduced sizes): a smoke test, not comparable with the targets")
    return lines + [""]


def write_result(out: Path, name: str, result: dict, markdown: list[str]) -> None:
    """Write ``<out>/<name>.json`` and ``<out>/<name>.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text("\n".join(markdown) + "\n", encoding="utf-8")


def met_cell(met: bool | None) -> str:
    """The ``met`` column of a target table: **yes**, **no**, or — where there is no target."""
    return {True: "**yes**", False: "**no**", None: "—"}[met]


def target_row(benchmark: str, name: str, measured: float | None, unit: str, goal: str,
               met: bool | None) -> dict:
    """One row of the summary: what was measured against which target (met None: no target)."""
    return {"benchmark": benchmark, "target": name, "measured": measured, "unit": unit,
            "goal": goal, "met": met}
