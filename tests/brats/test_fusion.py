"""``brats ensemble``: fusing saved probability maps into submission files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brats.cli import main
from brats.errors import BratsInputError
from brats.inference.combine import save_probabilities
from brats.inference.fusion import ensemble_folder, probability_files
from brats.submission import submission_name
from tests.conftest import SMALL, write_tiny_dataset

BOX = [[2, 18], [3, 15], [1, 11]]
CROP = tuple(b - a for a, b in BOX)


def one_hot_map(label_index: int, value: float = 0.7) -> np.ndarray:
    """(4, *CROP) probabilities: ``value`` on one class, the rest shared by the others."""
    probs = np.full((4, *CROP), (1 - value) / 3, np.float32)
    probs[label_index] = value
    return probs


def write_source(folder: Path, case_ids: list[str], probs: list[np.ndarray], **meta) -> Path:
    for case_id, p in zip(case_ids, probs):
        save_probabilities(folder / f"{case_id}_probabilities.npz", p,
                           {"case_id": case_id, "box": BOX, "shape": list(SMALL), **meta})
    return folder


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "Brats17ValidationData"
    return root, write_tiny_dataset(root, "2017", 2, with_seg=False)


def test_mean_of_hand_built_maps_gives_the_expected_labels(dataset, tmp_path: Path) -> None:
    root, ids = dataset
    a = one_hot_map(2)                         # ED everywhere, p = 0.7
    b = one_hot_map(3, 0.4)                    # ET 0.4, others 0.2
    b[3, :4] = 0.9                             # ET very sure in the first 4 rows of the crop
    b[:3, :4] = 0.1 / 3
    src_a = write_source(tmp_path / "a", ids, [a, a])
    src_b = write_source(tmp_path / "b", ids, [b, b])
    out = tmp_path / "fused"
    files = ensemble_folder([src_a, src_b], root, out, progress=False)
    assert [f.name for f in files] == [submission_name(i) for i in ids]
    labels = np.asanyarray(nib.load(files[0]).dataobj)
    assert labels.shape == SMALL
    inside = labels[2:18, 3:15, 1:11]
    # rows 0-3: ET (0.1 + 0.9) / 2 = 0.5 beats ED (0.7 + 0.033) / 2 = 0.367
    assert (inside[:4] == 4).all()
    # elsewhere: ED (0.7 + 0.2) / 2 = 0.45 beats ET (0.1 + 0.4) / 2 = 0.25
    assert (inside[4:] == 2).all()
    outside = labels.copy()
    outside[2:18, 3:15, 1:11] = 0
    assert not outside.any()
    image = nib.load(next(root.rglob(f"{ids[0]}_t1.nii.gz")))
    assert np.array_equal(nib.load(files[0]).affine, image.affine)


def test_weights_change_the_vote(dataset, tmp_path: Path) -> None:
    root, ids = dataset
    src_a = write_source(tmp_path / "a", ids, [one_hot_map(2, 0.7)] * 2)
    src_b = write_source(tmp_path / "b", ids, [one_hot_map(1, 0.6)] * 2)
    # equal weights: ED (0.7 + 0.133) / 2 = 0.417 beats NCR (0.1 + 0.6) / 2 = 0.35
    equal = ensemble_folder([src_a, src_b], root, tmp_path / "e", progress=False)
    assert set(np.unique(np.asanyarray(nib.load(equal[0]).dataobj))) == {0, 2}
    # weights 1 : 3: NCR (0.1 + 1.8) / 4 = 0.475 beats ED (0.7 + 0.4) / 4 = 0.275
    out = ensemble_folder([src_a, src_b], root, tmp_path / "w", weights=[1, 3], progress=False)
    assert set(np.unique(np.asanyarray(nib.load(out[0]).dataobj))) == {0, 1}
    with pytest.raises(BratsInputError, match="2 sources but 1 weights"):
        ensemble_folder([src_a, src_b], root, tmp_path / "x", weights=[1], progress=False)
    with pytest.raises(BratsInputError, match="positive sum"):
        ensemble_folder([src_a, src_b], root, tmp_path / "x", weights=[0, 0], progress=False)


def test_mismatched_members_are_clear_errors(dataset, tmp_path: Path) -> None:
    root, ids = dataset
    good = write_source(tmp_path / "good", ids, [one_hot_map(1)] * 2)
    swapped = write_source(tmp_path / "swapped", ids, [one_hot_map(1)] * 2, classes=[0, 2, 1, 4])
    with pytest.raises(BratsInputError, match="different classes"):
        ensemble_folder([good, swapped], root, tmp_path / "o1", progress=False)
    small = tmp_path / "small"
    for case_id in ids:
        save_probabilities(small / f"{case_id}_probabilities.npz", np.zeros((4, 3, 3, 3)),
                           {"case_id": case_id, "box": BOX, "shape": list(SMALL)})
    with pytest.raises(BratsInputError, match="different shape"):
        ensemble_folder([good, small], root, tmp_path / "o2", progress=False)
    partial = write_source(tmp_path / "partial", ids[:1], [one_hot_map(1)])
    with pytest.raises(BratsInputError, match=f"no probability map for case.*{ids[1]}"):
        ensemble_folder([good, partial], root, tmp_path / "o3", progress=False)
    with pytest.raises(BratsInputError, match="neither probability maps"):
        ensemble_folder([good, tmp_path], root, tmp_path / "o4", progress=False)


def test_cli_resumes_and_reports_errors(dataset, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    root, ids = dataset
    src = write_source(tmp_path / "a", ids, [one_hot_map(3)] * 2)
    assert sorted(probability_files(src)) == ids
    out = tmp_path / "sub"
    args = ["ensemble", str(src), str(src), "--input", str(root), "--output", str(out),
            "--weights", "1", "2", "--no-progress"]
    assert main(args) == 0
    assert "2 ensemble prediction(s) of 2 source(s)" in capsys.readouterr().out
    stamp = (out / submission_name(ids[0])).stat().st_mtime_ns
    assert main(args) == 2
    assert "is not empty; pass --continue" in capsys.readouterr().err
    assert main([*args, "--continue"]) == 0
    assert (out / submission_name(ids[0])).stat().st_mtime_ns == stamp
    assert main([*args[:-2], "3", "--no-progress", "--continue"]) == 2
    assert "other settings (sources.a_2.weight: 2.0 → 3.0)" in capsys.readouterr().err
    assert main(["ensemble", str(tmp_path / "missing"), "--input", str(root), "--output",
                 str(tmp_path / "o"), "--no-progress"]) == 2
    assert "ensemble source not found" in capsys.readouterr().err



def test_channels_last_switch_gives_the_same_probabilities() -> None:
    import copy

    import torch

    from brats.config import InferenceConfig
    from brats.inference.predictor import Member, predict_cropped
    from brats.nets import build_network

    torch.manual_seed(0)
    network = build_network("isensee_unet", in_channels=4, num_classes=4, base_filters=4).eval()
    image = np.random.default_rng(0).normal(size=(4, 20, 18, 12)).astype(np.float32)
    probs = []
    for channels_last in (False, True):
        member = Member("m", copy.deepcopy(network),
                        InferenceConfig(num_mirrors=1, channels_last=channels_last), "labels",
                        "none", Path("m"), {"data": {"output_crop": [0, 0, 0]}})
        probs.append(predict_cropped([member], image, torch.device("cpu")))
        assert member.network.conv1.weight.is_contiguous(
            memory_format=torch.channels_last_3d) == channels_last
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5)
