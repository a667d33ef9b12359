"""Smoke tests of the benchmarks: their quick variants on tiny grids write the expected JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import run_all
from benchmarks.data import bench_data
from benchmarks.evaluation import bench_evaluation
from benchmarks.inference import bench_inference


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(work, out)``: synthetic data and results shared by the tests of this module."""
    root = tmp_path_factory.mktemp("benchmarks")
    return root / "work", root / "results"


def _read(out: Path, name: str) -> dict:
    result = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    assert (out / f"{name}.md").read_text(encoding="utf-8").startswith("# ")
    assert {"benchmark", "environment", "settings", "targets"} <= set(result)
    assert result["environment"]["date_utc"] and result["environment"]["machine"]
    assert result["settings"]["quick"] is True
    for row in result["targets"]:
        assert {"benchmark", "target", "measured", "unit", "goal", "met"} <= set(row)
        assert row["measured"] is None or row["measured"] >= 0
    return result


@pytest.fixture(scope="module")
def inference(folders: tuple[Path, Path]) -> dict:
    work, out = folders
    threads = torch.get_num_threads()
    try:
        assert bench_inference.main(["--quick", "--no-isolate", "--threads", "1", "--variants", "fp32,bf16",
                                     "--entries", "isensee2017,wang2017,absent2017",
                                     "--work", str(work), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return _read(out, "inference")


def test_inference_rows_baseline_and_skipped_entry(inference: dict) -> None:
    rows = {r["name"]: r for r in inference["rows"]}
    assert set(rows) == {"baseline: MONAI DynUNet, full grid", "isensee2017 fp32", "isensee2017 bf16",
                         "wang2017 fp32", "wang2017 bf16"}
    for row in rows.values():
        assert "error" not in row, row
        assert row["seconds"] > 0 and row["load_preprocess_s"] > 0 and row["peak_rss_mib"] > 0
        assert row["parameters"] > 0 and row["members"] >= 1
    assert rows["wang2017 fp32"]["members"] == 9
    assert rows["baseline: MONAI DynUNet, full grid"]["sliding_windows"] > 0
    assert rows["isensee2017 fp32"]["extrapolated"] and rows["isensee2017 fp32"]["seconds_8_mirrors"] > 0
    assert "not found" in inference["notes"]["absent2017"]
    assert "cascade" in inference["notes"]["wang2017"]
    agreement = inference["bf16_vs_fp32"]["isensee2017"]
    assert 0 <= agreement["voxel_agreement"] <= 1 and set(agreement["dice"]) == {"WT", "TC", "ET"}
    names = [t["target"] for t in inference["targets"]]
    assert any("speed-up" in n and t["met"] is not None for n, t in zip(names, inference["targets"]))
    assert any(n.startswith("isensee2017: peak RSS") for n in names)


@pytest.fixture(scope="module")
def data(folders: tuple[Path, Path]) -> dict:
    work, out = folders
    assert bench_data.main(["--quick", "--patches", "2", "--naive-patches", "1", "--work", str(work),
                            "--out", str(out)]) == 0
    return _read(out, "data")


def test_data_patches_and_loads(data: dict) -> None:
    m = data["measured"]
    for key in ("load_cache_s", "load_nifti_s", "load_speedup", "patch_cache_s", "patch_nifti_s",
                "patches_per_s_cache", "patches_per_s_nifti", "patches_per_s_cache_order1"):
        assert m[key] > 0, key
    assert m["same_load"] is True and m["same_patches"] is True
    assert data["profile"]["total (under the profiler)"] > 0
    assert data["kernels"]["max_abs_diff_grid_sample_vs_order1"] < 1e-3
    assert len(data["targets"]) == 4 and data["targets"][0]["goal"] == "≥ 4"


@pytest.fixture(scope="module")
def evaluation(folders: tuple[Path, Path]) -> dict:
    work, out = folders
    assert bench_evaluation.main(["--quick", "--cases", "3", "--work", str(work), "--out", str(out)]) == 0
    return _read(out, "evaluation")


def test_evaluation_folder(evaluation: dict) -> None:
    m = evaluation["measured"]
    assert m["seconds_jobs"] > 0 and m["seconds_1_job"] > 0
    assert all(0 <= m["mean_dice"][r] <= 1 for r in ("WT", "TC", "ET"))
    assert evaluation["targets"][0]["goal"] == "< 60"


def test_summary_collects_targets_and_skips_gpu(folders: tuple[Path, Path], inference: dict, data: dict,
                                                evaluation: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    work, out = folders
    monkeypatch.setattr(run_all, "cuda_available", lambda: False)
    assert run_all.main(["--quick", "--device", "cuda", "--only", "training", "--work", str(work),
                         "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"]["training"]["status"].startswith("skipped: no CUDA")
    assert {"inference", "data", "evaluation"} <= set(summary["status"])
    expected = len(inference["targets"]) + len(data["targets"]) + len(evaluation["targets"])
    assert len(summary["targets"]) == expected
    text = (out / "summary.md").read_text(encoding="utf-8")
    assert "| benchmark | target | measured | goal | met |" in text and "git_commit" in summary["environment"]
