"""Uncertainty maps (running moments of the samples, entropy / std, QU-BraTS files) and the
QU-BraTS evaluation, checked against numbers computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from brats.cli import main
from brats.config import InferenceConfig, load_config, parse_overrides, to_dict
from brats.data.layouts import discover
from brats.data.nifti import read_nifti, write_nifti
from brats.entries import resolve_entry
from brats.errors import BratsInputError
from brats.inference import predictor
from brats.inference.combine import class_probabilities_to_regions, save_probabilities
from brats.inference.fusion import ensemble_folder
from brats.inference.predictor import Member, predict_case
from brats.inference.tta import predict_with_tta
from brats.manifest import read_manifest
from brats.nets import build_network
from brats.preprocess.crop import bounding_box, brain_mask
from brats.submission import submission_name, write_submission
from brats.training.checkpoint import save_checkpoint
from brats.uncertainty import (
    RegionMoments,
    case_uncertainty,
    curve_scores,
    region_curves,
    thresholds,
    uncertainty_maps,
    uncertainty_names,
)

# One voxel, two samples of class probabilities (background, NCR, ED, ET):
# regions (WT, TC, ET) = (0.4, 0.2, 0.1) and (0.8, 0.7, 0.4).
SAMPLE_A = np.array([0.6, 0.1, 0.2, 0.1], dtype=np.float32).reshape(4, 1, 1, 1)
SAMPLE_B = np.array([0.2, 0.3, 0.1, 0.4], dtype=np.float32).reshape(4, 1, 1, 1)


def test_running_moments_match_the_hand_computed_mean_and_spread() -> None:
    moments = RegionMoments()
    moments.add(SAMPLE_A)
    moments.add(SAMPLE_B)
    assert moments.count == 2
    np.testing.assert_allclose(moments.mean().ravel(), [0.6, 0.45, 0.25], atol=1e-6)
    np.testing.assert_allclose(moments.std().ravel(), [0.2, 0.25, 0.15], atol=1e-6)
    weighted = RegionMoments()
    weighted.add(SAMPLE_A, 1.0)
    weighted.add(SAMPLE_B, 3.0)
    # WT: mean (0.4 + 3 * 0.8) / 4 = 0.7; variance (0.3² + 3 * 0.1²) / 4 = 0.03
    assert weighted.mean().ravel()[0] == pytest.approx(0.7, abs=1e-6)
    assert weighted.std().ravel()[0] == pytest.approx(np.sqrt(0.03), abs=1e-6)


def test_maps_from_entropy_and_std_are_integers_0_to_100() -> None:
    moments = RegionMoments()
    moments.add(SAMPLE_A)
    moments.add(SAMPLE_B)
    entropy = uncertainty_maps(moments, "entropy")
    # H(0.6) = 0.971 bits, H(0.45) = 0.993, H(0.25) = 0.811
    assert entropy.dtype == np.uint8 and entropy.ravel().tolist() == [97, 99, 81]
    assert uncertainty_maps(moments, "std").ravel().tolist() == [40, 50, 30]   # 200 * std
    certain = RegionMoments()
    certain.add(np.array([1.0, 0, 0, 0], dtype=np.float32).reshape(4, 1, 1, 1))
    assert uncertainty_maps(certain).ravel().tolist() == [0, 0, 0]
    with pytest.raises(BratsInputError, match="unknown uncertainty measure"):
        uncertainty_maps(moments, "variance")
    with pytest.raises(BratsInputError, match="no sample"):
        RegionMoments().mean()


def test_qu_brats_curves_and_score_by_hand() -> None:
    ref = np.array([1, 1, 1, 0, 0, 0], bool).reshape(1, 1, 6)
    pred = np.array([1, 1, 0, 1, 0, 0], bool).reshape(1, 1, 6)
    unc = np.array([0, 60, 30, 80, 10, 0]).reshape(1, 1, 6)
    curves = region_curves(ref, pred, unc, np.ones_like(ref), thresholds(4))
    assert curves["threshold"].tolist() == [0, 25, 50, 75, 100]
    np.testing.assert_allclose(curves["dice"], [1, 1, 2 / 3, 0.8, 2 / 3])
    np.testing.assert_allclose(curves["ftp_ratio"], [0.5, 0.5, 0.5, 0, 0])
    np.testing.assert_allclose(curves["ftn_ratio"], [0.5, 0, 0, 0, 0])
    scores = curve_scores(curves)
    assert scores["auc_dice"] == pytest.approx(0.825)
    assert scores["auc_ftp"] == pytest.approx(0.3125)
    assert scores["auc_ftn"] == pytest.approx(0.0625)
    assert scores["score"] == pytest.approx((0.825 + 0.6875 + 0.9375) / 3)
    outside = np.array([1, 1, 1, 1, 1, 0], bool).reshape(1, 1, 6)   # TN counted in the brain only
    assert region_curves(ref, pred, unc, outside, thresholds(4))["ftn_ratio"].tolist()[:2] == [1, 0]


def test_case_evaluation_uses_nested_regions() -> None:
    labels = np.array([0, 2, 1, 4], np.uint8).reshape(1, 1, 4)
    maps = np.zeros((3, 1, 1, 4), np.uint8)
    maps[2, 0, 0, 3] = 100        # the ET voxel is fully uncertain
    scores, curves = case_uncertainty(labels, labels, maps, np.ones((1, 1, 4), bool))
    assert scores["region"].tolist() == ["WT", "TC", "ET"]
    assert scores["score"].tolist()[:2] == [1.0, 1.0]
    et = curves[curves["region"] == "ET"]
    # ET: the only TP is filtered below τ = 100; Dice of the empty remainder is 1
    assert et["ftp_ratio"].tolist() == [1, 1, 1, 1, 0] and et["dice"].tolist() == [1] * 5
    assert scores["auc_ftp"].iloc[2] == pytest.approx(0.875)


class TinyNet(nn.Module):
    """A random 3-D conv net with dropout: (B, 4, X, Y, Z) → (B, 4, X, Y, Z) logits."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(4, 4, 3, padding=1)
        self.drop = nn.Dropout3d(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.conv(x))


@pytest.mark.parametrize("dropout", [False, True])
def test_on_sample_sees_every_sample_and_leaves_the_mean_unchanged(dropout: bool) -> None:
    net = TinyNet()
    image = np.random.default_rng(1).normal(size=(4, 6, 5, 4)).astype(np.float32)
    kwargs = {"mirror_axes": (0, 1, 2), "num_mirrors": 8, "test_time_dropout": dropout,
              "repeats": 2, "activation": "softmax"}
    torch.manual_seed(3)
    expected = predict_with_tta(net, image, **kwargs)
    moments = RegionMoments()
    torch.manual_seed(3)
    assert np.array_equal(predict_with_tta(net, image, on_sample=moments.add, **kwargs), expected)
    assert moments.count == (16 if dropout else 8)
    np.testing.assert_allclose(moments.mean(), class_probabilities_to_regions(expected),
                               atol=1e-6)


def test_rules_without_samples_refuse_uncertainty(tiny_2017: Path, monkeypatch) -> None:
    monkeypatch.setitem(predictor.CASE_PREDICTORS, "rules", predictor.predict_mean)
    member = Member("m", TinyNet(), InferenceConfig(num_mirrors=1), "labels", "none", Path("m"),
                    {"data": {"output_crop": [0, 0, 0]}, "combine": "rules"})
    with pytest.raises(BratsInputError, match="need the mean rule"):
        predict_case([member], discover(tiny_2017)[0], torch.device("cpu"), RegionMoments())


def make_run(folder: Path, seed: int = 0) -> Path:
    """A run folder with a hand-made final checkpoint of a tiny isensee2017 network."""
    config = load_config(resolve_entry("isensee2017"), "quick",
                         parse_overrides(["network.kwargs.base_filters=4"])).member("model")
    torch.manual_seed(seed)
    network = build_network(config.network.name, in_channels=4, num_classes=4,
                            **config.network.kwargs)
    folder.mkdir(parents=True)
    save_checkpoint({"entry": config.entry, "member": "model", "fold": seed,
                     "config": to_dict(config), "network": config.network.name,
                     "network_kwargs": dict(config.network.kwargs), "in_channels": 4,
                     "num_outputs": 4, "target": "labels", "intensity": config.data.intensity,
                     "epoch": 0, "model": network.state_dict()}, folder / "checkpoint_last.pt")
    return folder


def test_predict_writes_maps_and_evaluate_scores_them(tiny_2017: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "run")
    out, unc = tmp_path / "pred", tmp_path / "pred_uncertainty"
    assert main(["predict", str(run), "--input", str(tiny_2017), "--output", str(out),
                 "--uncertainty", "--no-progress"]) == 0
    cases = discover(tiny_2017)
    names = [n for c in cases for n in uncertainty_names(c.id)]
    assert sorted(p.name for p in unc.glob("*.nii.gz")) == sorted(names)
    assert read_manifest(unc)["settings"]["uncertainty"]["measure"] == "entropy"
    data = cases[0].load(with_labels=False)
    whole, _, _ = read_nifti(unc / f"{cases[0].id}_unc_whole.nii.gz")
    box = bounding_box(brain_mask(data.image))
    outside = np.ones(whole.shape, bool)
    outside[tuple(slice(a, b) for a, b in box)] = False
    assert whole.dtype == np.uint8 and whole.max() <= 100 and not whole[outside].any()
    # the labels are those of a prediction without --uncertainty
    plain = tmp_path / "plain"
    assert main(["predict", str(run), "--input", str(tiny_2017), "--output", str(plain),
                 "--no-progress"]) == 0
    for case in cases:
        a, _, _ = read_nifti(out / submission_name(case.id))
        b, _, _ = read_nifti(plain / submission_name(case.id))
        assert np.array_equal(a, b)
    # perfect predictions with certain maps score 1 everywhere
    perfect, certain = tmp_path / "perfect", tmp_path / "certain"
    perfect.mkdir()
    certain.mkdir()
    for case in cases:
        labels = case.load().labels
        write_submission(labels, case.images[0], perfect / submission_name(case.id))
        for name in uncertainty_names(case.id):
            write_nifti(np.zeros(labels.shape, np.uint8), np.eye(4), certain / name)
    capsys.readouterr()
    assert main(["evaluate", str(perfect), str(tiny_2017), "--uncertainty", str(certain),
                 "--no-progress", "--out", str(tmp_path / "m.csv")]) == 0
    printed = capsys.readouterr().out
    assert "QU-BraTS uncertainty" in printed
    scores = pd.read_csv(tmp_path / "m_uncertainty.csv")
    assert len(scores) == 3 * len(cases) and (scores["score"] == 1.0).all()
    assert (scores["auc_dice"] == 1.0).all() and (scores["auc_ftn"] == 0.0).all()


def test_ensemble_maps_are_the_spread_of_the_sources(tiny_2017: Path, tmp_path: Path) -> None:
    cases = discover(tiny_2017)
    shape = cases[0].load(with_labels=False).image.shape[1:]
    box = [[0, n] for n in shape]
    for name, sample in (("a", SAMPLE_A), ("b", SAMPLE_B)):
        (tmp_path / name).mkdir()
        for case in cases:
            probs = np.broadcast_to(sample, (4, *shape)).astype(np.float32)
            save_probabilities(tmp_path / name / f"{case.id}_probabilities.npz", probs,
                               {"case_id": case.id, "box": box, "shape": list(shape)})
    ensemble_folder([tmp_path / "a", tmp_path / "b"], tiny_2017, tmp_path / "ens",
                    uncertainty_dir=tmp_path / "unc", uncertainty_measure="std", progress=False)
    written = sorted((tmp_path / "unc").glob("*_unc_*.nii.gz"))
    assert len(written) == 3 * len(cases)
    core, _, _ = read_nifti(tmp_path / "unc" / f"{cases[1].id}_unc_core.nii.gz")
    assert core.shape == shape and (core == 50).all()   # std 0.25 (float16 maps) → 50
    with pytest.raises(BratsInputError, match="own folder"):
        ensemble_folder([tmp_path / "a"], tiny_2017, tmp_path / "ens",
                        uncertainty_dir=tmp_path / "ens")
