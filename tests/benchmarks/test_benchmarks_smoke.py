"""Smoke tests of the benchmarks: their quick variants on tiny grids write the expected JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check, run_all
from benchmarks.data import bench_data
from benchmarks.evaluation import bench_evaluation
from benchmarks.inference import bench_inference
from benchmarks.training import bench_data_bound, compare_backends


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
    assert bench_data.main(["--quick", "--patches", "2", "--naive-patches", "1", "--device-reads", "2",
                            "--work", str(work), "--out", str(out)]) == 0
    return _read(out, "data")


def test_data_patches_and_loads(data: dict) -> None:
    m = data["measured"]
    for key in ("load_cache_s", "load_nifti_s", "load_speedup", "patch_cache_s", "patch_nifti_s",
                "patches_per_s_cache", "patches_per_s_nifti", "patches_per_s_cache_order1"):
        assert m[key] > 0, key
    assert m["same_load"] is True and m["same_patches"] is True
    assert data["profile"]["total (under the profiler)"] > 0
    assert data["kernels"]["max_abs_diff_grid_sample_vs_order1"] < 1e-3
    assert len(data["targets"]) == 9 and data["targets"][0]["goal"] == "≥ 4"


def test_data_device_backend_and_peer(data: dict) -> None:
    m, device = data["measured"], data["device"]
    for key in ("device_reads_per_s", "device_collate_2_s", "device_loader_patches_per_s",
                "device_batch_2_threads_s", "device_batch_1_thread_s", "device_patch_1_thread_total_s"):
        assert m[key] > 0, key
    assert len(device["read_s"]) == 2 and device["batch_block_shape"][:2] == [2, 4]
    assert device["profile_batch_1_thread"]["spatial step: grids, resampling, label and mask gathers"] > 0
    goals = {row["target"].split(":")[0]: row["goal"] for row in data["targets"]}
    assert goals["device backend, loader only"] == "≥ 20"
    if data["peer_version"] is None:
        assert "batchgeneratorsv2" in data["peer_note"] and m.get("peer_nearest_speedup") is None
    else:
        assert m["peer_nearest_s"] > 0 and m["peer_bilinear_s"] > 0 and m["peer_nearest_speedup"] > 0


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


@pytest.fixture(scope="module")
def data_bound(folders: tuple[Path, Path]) -> dict:
    work, out = folders
    threads = torch.get_num_threads()
    try:
        assert bench_data_bound.main(["--quick", "--work", str(work), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return _read(out, "data_bound_cpu")


def test_data_bound_loader_against_pregenerated(data_bound: dict) -> None:
    m = data_bound["measured"]
    assert m["pregenerated_s"] > 0 and m["loader_s"] > 0 and m["to_device_s"] > 0
    assert 0 < m["data_share"] < 1 and 0 <= m["wait_share"] <= m["data_share"]
    assert len(data_bound["seconds"]["step"]) == 2 and len(data_bound["seconds"]["pregenerated_after"]) == 2
    assert data_bound["targets"][0]["goal"] == "< 10 %"


@pytest.fixture(scope="module")
def gpu(folders: tuple[Path, Path]) -> dict:
    work, out = folders
    threads = torch.get_num_threads()
    try:
        assert gpu_check.main(["--device", "cpu", "--quick", "--steps", "1", "--work", str(work),
                               "--out", str(out / "gpu")]) == 0
    finally:
        torch.set_num_threads(threads)
    return _read(out / "gpu", "gpu_check")


def test_gpu_check_runs_every_part_on_the_cpu(gpu: dict) -> None:
    augmented = {(r["entry"], r["member"]) for r in gpu["augmentation"] if "error" not in r}
    assert augmented == set(gpu_check.AUGMENTED)
    trained = {(r["entry"], r["member"], r["mode"]) for r in gpu["training"] if "error" not in r}
    assert trained == {(e, m, mode) for e, m in gpu_check.TRAINED for mode in ("fp32", "amp")}
    assert "error" not in gpu["data_bound"] and gpu["data_bound"]["loader_s"] > 0
    assert {r["entry"] for r in gpu["prediction"] if "error" not in r} == set(gpu_check.ENTRIES)
    assert all(row["met"] is None for row in gpu["targets"])  # targets are judged on a GPU only
    assert any("compile off" in note for note in gpu["skipped"])


def test_gpu_check_names_missing_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(gpu_check.REQUIRED, "surely_not_installed_module", "surely-not-installed==1.0")
    with pytest.raises(SystemExit, match=r"(?s)surely-not-installed==1\.0.*pip download"):
        gpu_check.require_packages()


def test_compare_backends_verdict_weighs_difference_against_noise() -> None:
    def row(wt: float, spread: float) -> dict:
        return {"held_out_dice": {r: wt for r in compare_backends.REGIONS},
                "held_out_dice_std": {r: 0.01 for r in compare_backends.REGIONS},
                "cv_fold_dice": {r: [wt, wt + spread] for r in compare_backends.REGIONS}}

    small = compare_backends.verdict([row(0.80, 0.05), row(0.78, 0.02)])
    assert small["WT"]["beyond_noise"] is False and small["WT"]["difference"] == pytest.approx(0.02)
    large = compare_backends.verdict([row(0.80, 0.01), row(0.60, 0.02)])
    assert large["ET"]["beyond_noise"] is True and large["ET"]["fold_spread"] == pytest.approx(0.02)
    assert compare_backends.verdict([row(0.8, 0.0)]) == {}


def test_summary_collects_targets_and_skips_gpu(folders: tuple[Path, Path], inference: dict, data: dict,
                                                evaluation: dict, data_bound: dict, gpu: dict,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    work, out = folders
    monkeypatch.setattr(run_all, "cuda_available", lambda: False)
    assert run_all.main(["--quick", "--device", "cuda", "--only", "training,gpu_check", "--work", str(work),
                         "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"]["training"]["status"].startswith("skipped: no CUDA")
    assert summary["status"]["gpu_check"]["status"].startswith("skipped: no CUDA")
    assert summary["status"]["gpu_check"]["status"].endswith("earlier result shown")
    assert {"inference", "data", "data_bound", "evaluation"} <= set(summary["status"])
    expected = sum(len(r["targets"]) for r in (inference, data, evaluation, data_bound, gpu))
    assert len(summary["targets"]) == expected
    text = (out / "summary.md").read_text(encoding="utf-8")
    assert "| benchmark | target | measured | goal | met |" in text and "git_commit" in summary["environment"]
