"""Loading real (tiny) NIfTI cases and every bad-input error."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brats.data.geometry import brats_affine
from brats.data.layouts import discover
from brats.errors import BratsInputError
from tests.conftest import SMALL, make_arrays, write_tiny_dataset


@pytest.mark.parametrize("release", ["2017", "2020", "2021", "2023", "msd"])
def test_load_round_trips_image_and_labels(tmp_path: Path, release: str) -> None:
    write_tiny_dataset(tmp_path, release, 1)
    (case,) = discover(tmp_path)
    data = case.load()
    image, labels = make_arrays(1)
    assert data.image.shape == (4, *SMALL) and data.image.dtype == np.float32
    assert np.array_equal(data.image, image.astype(np.float32))
    assert data.labels is not None and data.labels.dtype == np.uint8
    assert np.array_equal(data.labels, labels)
    assert np.array_equal(data.affine, brats_affine(SMALL))
    assert data.spacing == pytest.approx((12.0, 240 / 18, 155 / 12))


def test_brats_affine_is_brats_space() -> None:
    expected = np.diag([-1.0, -1.0, 1.0, 1.0])
    expected[1, 3] = 239
    assert np.array_equal(brats_affine(), expected)
    assert nib.aff2axcodes(brats_affine()) == ("L", "P", "S")


def _t1(root: Path) -> Path:
    return next(root.rglob("*_t1.nii.gz"))


def _rewrite(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> None:
    img = nib.load(path)
    nib.save(nib.Nifti1Image(array, img.affine if affine is None else affine), path)


def test_shape_mismatch(tiny_2017: Path) -> None:
    path = _t1(tiny_2017)
    _rewrite(path, np.zeros((20, 18, 11), np.int16))
    with pytest.raises(BratsInputError, match=r"_t1ce\.nii\.gz: shape \(20, 18, 12\) differs from "
                                              r"\(20, 18, 11\)"):
        discover(tiny_2017)[0].load()


def test_affine_mismatch(tiny_2017: Path) -> None:
    path = next(tiny_2017.rglob("*_flair.nii.gz"))
    affine = brats_affine(SMALL)
    affine[0, 3] += 2.0
    _rewrite(path, np.asanyarray(nib.load(path).dataobj), affine)
    with pytest.raises(BratsInputError, match=r"_flair\.nii\.gz: affine differs .* 2 mm"):
        discover(tiny_2017)[0].load()


def test_non_3d(tiny_2017: Path) -> None:
    _rewrite(_t1(tiny_2017), np.zeros((20, 18, 12, 2), np.int16))
    with pytest.raises(BratsInputError, match=r"_t1\.nii\.gz: expected a 3-D volume, found shape "
                                              r"\(20, 18, 12, 2\)"):
        discover(tiny_2017)[0].load()


def test_nan_voxels(tiny_2017: Path) -> None:
    array = np.ones((20, 18, 12), np.float32)
    array[0, 0, :3] = np.nan
    array[1, 1, 1] = np.inf
    _rewrite(next(tiny_2017.rglob("*_t2.nii.gz")), array)
    with pytest.raises(BratsInputError, match=r"_t2\.nii\.gz: 4 voxels are NaN or infinite"):
        discover(tiny_2017)[0].load()


def test_unknown_label(tiny_2017: Path) -> None:
    seg = next(tiny_2017.rglob("*_seg.nii.gz"))
    labels = np.asanyarray(nib.load(seg).dataobj).copy()
    labels[0, 0, 0] = 3
    _rewrite(seg, labels)
    with pytest.raises(BratsInputError, match=r"_seg\.nii\.gz: labels \[3\] are not in the BraTS "
                                              r"2017-2022"):
        discover(tiny_2017)[0].load()


def test_non_integer_label(tiny_2017: Path) -> None:
    seg = next(tiny_2017.rglob("*_seg.nii.gz"))
    labels = np.asanyarray(nib.load(seg).dataobj).astype(np.float32)
    labels[0, 0, 0] = 0.5
    _rewrite(seg, labels)
    with pytest.raises(BratsInputError, match="non-integer"):
        discover(tiny_2017)[0].load()


def test_truncated_file(tiny_2017: Path) -> None:
    path = _t1(tiny_2017)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BratsInputError, match=r"_t1\.nii\.gz: cannot read NIfTI data, the file is "
                                              "corrupt or truncated"):
        discover(tiny_2017)[0].load()


def test_not_a_nifti(tiny_2017: Path) -> None:
    path = _t1(tiny_2017)
    path.write_bytes(gzip.compress(b"this is not an image" * 10))
    with pytest.raises(BratsInputError, match=r"_t1\.nii\.gz: cannot read"):
        discover(tiny_2017)[0].load()


def test_deleted_file_after_discovery(tiny_2017: Path) -> None:
    case = discover(tiny_2017)[0]
    case.images[2].unlink()
    with pytest.raises(BratsInputError, match="_t2.nii.gz: file not found"):
        case.load()


def test_msd_channel_order(tmp_path: Path) -> None:
    write_tiny_dataset(tmp_path, "msd", 1)
    stored = np.asanyarray(nib.load(tmp_path / "imagesTr" / "BRATS_001.nii.gz").dataobj)
    data = discover(tmp_path)[0].load()
    # MSD channel 0 is FLAIR, 1 T1w, 2 T1gd, 3 T2w; canonical order is t1, t1ce, t2, flair.
    assert np.array_equal(data.image[3], stored[..., 0])
    assert np.array_equal(data.image[0], stored[..., 1])
    seg = np.asanyarray(nib.load(tmp_path / "labelsTr" / "BRATS_001.nii.gz").dataobj)
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    assert np.array_equal(data.labels == 2, seg == 1)  # MSD edema is 1


def _flip_one_payload_bit(path: Path) -> None:
    """Flip one bit of the deflate stream where it still inflates, to other bytes of the same
    length (only the CRC-32 at the end can tell)."""
    original = path.read_bytes()
    raw = gzip.decompress(original)
    for position in range(len(original) // 2, len(original) - 8):
        data = bytearray(original)
        data[position] ^= 0x01
        try:
            inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(bytes(data[10:]))
        except zlib.error:
            continue
        if len(inflated) >= len(raw) and inflated[:len(raw)] != raw:
            path.write_bytes(bytes(data))
            return
    raise AssertionError("no silently inflating bit flip found")


def test_gzip_crc_is_checked(tiny_2017: Path) -> None:
    from brats.data.nifti import read_nifti

    path = _t1(tiny_2017)
    good = np.asanyarray(nib.load(path).dataobj).copy()
    _flip_one_payload_bit(path)
    wrong = np.asanyarray(nib.load(path).dataobj)  # nibabel alone reads other voxels silently
    assert not np.array_equal(wrong, good)
    with pytest.raises(BratsInputError, match=r"_t1\.nii\.gz: .*corrupt.*CRC check failed"):
        read_nifti(path)


def _patch_header(path: Path, fmt: str, offset: int, *values: float) -> None:
    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into(fmt, raw, offset, *values)
    path.write_bytes(gzip.compress(bytes(raw)))


#: Header edits (struct format, byte offset, values) that nibabel reads without complaint:
#: pixdim[1..3] at 80, sform rows srow_x/y/z at 280/296/312 (used once qform_code is 0).
_ZERO_SFORM_COLUMN_0 = [("<f", 280, (0.0,)), ("<f", 296, (0.0,)), ("<f", 312, (0.0,))]
_PARALLEL_SFORM_AXES = [("<ffff", 280, (1.0, 1.0, 0.0, 0.0)), ("<ffff", 296, (1.0, 1.0, 0.0, 0.0))]


@pytest.mark.parametrize(("edits", "message"), [
    ([("<f", 84, (0.0,))], r"pixdim\) \(12\.0, 0\.0, 12\.9"),
    ([("<f", 80, (-12.0,))], r"pixdim\) \(-12\.0,"),
    (_ZERO_SFORM_COLUMN_0, r"voxel spacing \(0\.0, 13\.3"),
    (_PARALLEL_SFORM_AXES, r"nearly\) parallel"),
], ids=["zero-pixdim", "negative-pixdim", "zero-sform-column", "parallel-axes"])
def test_unusable_geometry(tiny_2017: Path, edits: list[tuple[str, int, tuple[float, ...]]],
                           message: str) -> None:
    path = _t1(tiny_2017)
    _patch_header(path, "<h", 252, 0)  # qform_code 0: the sform is the affine
    for fmt, offset, values in edits:
        _patch_header(path, fmt, offset, *values)
    with pytest.raises(BratsInputError, match=message):
        discover(tiny_2017)[0].load()


def test_empty_modality_and_labels_outside_the_brain(tiny_2017: Path) -> None:
    flair = next(tiny_2017.rglob("*_flair.nii.gz"))
    original = np.asanyarray(nib.load(flair).dataobj).copy()
    _rewrite(flair, np.zeros_like(original))
    with pytest.raises(BratsInputError, match=r"_flair\.nii\.gz: every voxel is 0"):
        discover(tiny_2017)[0].load()
    _rewrite(flair, original)
    seg = next(tiny_2017.rglob("*_seg.nii.gz"))
    labels = np.asanyarray(nib.load(seg).dataobj).copy()
    labels[0, 0, 0] = labels[-1, -1, -1] = 2  # corners: outside the ellipsoidal brain
    _rewrite(seg, labels)
    with pytest.raises(BratsInputError, match=r"_seg\.nii\.gz: 2 labelled voxels lie outside"):
        discover(tiny_2017)[0].load()
