"""Preprocessing cache: crop, z-score, exact paste-back, resumability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brats.data.layouts import discover
from brats.errors import BratsInputError
from brats.preprocess.cache import load_index, load_prepared, prepare_dataset, restore_full
from brats.preprocess.crop import bounding_box, crop, paste_back
from brats.preprocess.normalize import zscore


def test_bounding_box_includes_last_voxel() -> None:
    mask = np.zeros((10, 8, 6), bool)
    mask[2, 3, 1] = mask[7, 5, 4] = True
    assert bounding_box(mask) == ((2, 8), (3, 6), (1, 5))
    assert bounding_box(mask, margin=3) == ((0, 10), (0, 8), (0, 6))
    with pytest.raises(BratsInputError, match="empty mask"):
        bounding_box(np.zeros((3, 3, 3), bool))


def test_crop_paste_back_is_exact() -> None:
    rng = np.random.default_rng(1)
    full = rng.integers(0, 5, (2, 9, 7, 5)).astype(np.uint8)
    box = ((1, 8), (2, 7), (0, 4))
    back = paste_back(crop(full, box), box, full.shape[1:])
    inside = np.zeros(full.shape[1:], bool)
    inside[1:8, 2:7, 0:4] = True
    assert np.array_equal(back[:, inside], full[:, inside])
    assert not back[:, ~inside].any()


def test_zscore_hand_values() -> None:
    image = np.zeros((1, 2, 2, 1), np.float32)
    image[0, :, :, 0] = [[0, 2], [4, 6]]
    mask = image[0] != 0
    out, mean, std = zscore(image, mask)
    assert mean[0] == 4.0 and std[0] == pytest.approx(np.sqrt(8 / 3))
    assert out[0, 0, 0, 0] == 0.0
    assert out[0, 1, 1, 0] == pytest.approx(2 / np.sqrt(8 / 3))


def test_prepare_then_paste_back_reproduces_labels_and_affine(tiny_2017: Path,
                                                              tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    records = prepare_dataset(tiny_2017, cache, progress=False)
    assert load_index(cache)["complete"] is True
    for case, record in zip(discover(tiny_2017), records):
        original = case.load()
        prepared = load_prepared(cache, case.id)
        assert isinstance(prepared.image, np.memmap)
        assert prepared.image.shape == (4, *(b - a for a, b in record.box))
        assert np.array_equal(restore_full(np.asarray(prepared.labels), record), original.labels)
        assert np.array_equal(record.affine_array, original.affine)  # bit for bit
        assert record.nifti_header().binaryblock == original.header.binaryblock
        brain = np.any(prepared.image != 0, axis=0)
        for channel in prepared.image:
            assert float(channel[brain].mean()) == pytest.approx(0, abs=1e-5)
            assert float(channel[brain].std()) == pytest.approx(1, abs=1e-4)
        assert record.grade in ("HGG", "LGG")
        assert sum(record.label_voxels.values()) == prepared.labels.size
        assert record.region_voxels["WT"] == int(np.count_nonzero(original.labels))
        for label, coords in record.locations.items():
            assert all(prepared.labels[tuple(c)] == int(label) for c in coords)


def test_prepare_resumes_and_skips_finished_cases(tiny_2017: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    records = prepare_dataset(tiny_2017, cache, progress=False)
    first = cache / f"{records[0].id}_image.npy"
    stamp = first.stat().st_mtime_ns
    (cache / f"{records[1].id}.json").unlink()  # as if interrupted before the record was written
    again = prepare_dataset(tiny_2017, cache, progress=False)
    assert first.stat().st_mtime_ns == stamp
    assert (cache / f"{records[1].id}.json").is_file()
    assert again == records


def test_prepare_refuses_foreign_or_incompatible_folder(tiny_2017: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(BratsInputError, match="not a brats cache"):
        prepare_dataset(tiny_2017, foreign, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"
    cache = tmp_path / "cache"
    prepare_dataset(tiny_2017, cache, progress=False)
    with pytest.raises(BratsInputError, match="image_dtype"):
        prepare_dataset(tiny_2017, cache, dtype="float16", progress=False)


def test_prepare_float16_and_validation_split(tmp_path: Path) -> None:
    from tests.conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path / "val", "2020", 2, with_seg=False)
    records = prepare_dataset(tmp_path / "val", tmp_path / "cache", dtype="float16", jobs=2,
                              progress=False)
    assert [r.has_labels for r in records] == [False, False]
    prepared = load_prepared(tmp_path / "cache", records[0].id)
    assert prepared.labels is None and prepared.image.dtype == np.float16
    index = json.loads((tmp_path / "cache" / "dataset.json").read_text())
    assert index["cases"] == ["BraTS20_Validation_001", "BraTS20_Validation_002"]


def test_prepare_reports_failed_cases_and_keeps_others(tiny_2017: Path, tmp_path: Path) -> None:
    broken = next(tiny_2017.rglob("*_t1.nii.gz"))
    broken.write_bytes(b"broken")
    with pytest.raises(BratsInputError, match=r"1 case\(s\) failed: .*cannot read"):
        prepare_dataset(tiny_2017, tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").glob("*_labels.npy"))) == 1


def test_cache_records_its_sources_and_refuses_another(tiny_2017: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    prepare_dataset(tiny_2017, cache, progress=False)
    index = load_index(cache)
    case = discover(tiny_2017)[0]
    files = index["inputs"][case.id]
    assert [Path(f[0]).name for f in files] == [p.name for p in (*case.images, case.seg)]
    assert [f[1] for f in files] == [p.stat().st_size for p in (*case.images, case.seg)]
    other = tmp_path / "other" / "Brats17TrainingData"
    from tests.conftest import write_tiny_dataset

    write_tiny_dataset(other, "2017", 2)
    with pytest.raises(BratsInputError, match=r"existing cache has source=.*delete .* rebuild"):
        prepare_dataset(other, cache, progress=False)


def test_damaged_cache_names_the_rebuild_command(tiny_2017: Path, tmp_path: Path) -> None:
    from brats.preprocess.cache import load_record

    cache = tmp_path / "cache"
    records = prepare_dataset(tiny_2017, cache, progress=False)
    record = cache / f"{records[0].id}.json"
    record.write_text(record.read_text()[:40])
    hint = f"brats prepare {tiny_2017.resolve()} --out {cache}"
    with pytest.raises(BratsInputError, match="damaged case record") as error:
        load_record(cache, records[0].id)
    assert hint in str(error.value)
    (cache / f"{records[1].id}_labels.npy").unlink()
    with pytest.raises(BratsInputError, match="_labels.npy: cached array missing"):
        load_prepared(cache, records[1].id)
    again = prepare_dataset(tiny_2017, cache, progress=False)  # both damaged cases are redone
    assert again == records
    assert load_prepared(cache, records[1].id).labels is not None
