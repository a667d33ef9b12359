"""Dataset overview: label volumes against hand counts, and the figures' contents."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from brats.data.geometry import brats_affine, voxel_spacing
from brats.errors import BratsInputError
from brats.explore import dataset_table, plot_intensity_histograms, plot_label_volumes
from tests.conftest import SMALL, make_arrays, write_tiny_dataset


def test_dataset_table_counts_voxels(tiny_2017: Path) -> None:
    table = dataset_table(tiny_2017, progress=False)
    assert table["case"].tolist() == ["Brats17_SYN_001_1", "Brats17_SYN_002_1"]
    assert table["grade"].tolist() == ["HGG", "LGG"]
    spacing = voxel_spacing(brats_affine(SMALL))
    voxel_ml = np.prod(spacing) / 1000
    for i, row in enumerate(table.itertuples(), start=1):
        image, labels = make_arrays(i)
        assert row.shape == SMALL
        assert row.spacing_mm == pytest.approx(spacing, abs=1e-3)
        assert row.brain_ml == pytest.approx(np.count_nonzero(image[0]) * voxel_ml)
        assert row.label1_ml == pytest.approx(np.sum(labels == 1) * voxel_ml)
        assert row.label2_ml == pytest.approx(np.sum(labels == 2) * voxel_ml)
        assert row.label4_ml == pytest.approx(np.sum(labels == 4) * voxel_ml)
        assert row.WT_ml == pytest.approx(np.sum(labels > 0) * voxel_ml)
        assert row.TC_ml == pytest.approx(np.sum((labels == 1) | (labels == 4)) * voxel_ml)
        assert row.ET_ml == row.label4_ml
        assert row.WT_ml == pytest.approx(row.label1_ml + row.label2_ml + row.label4_ml)


def test_validation_cases_have_no_volumes(tmp_path: Path) -> None:
    write_tiny_dataset(tmp_path, "2017", 2, with_seg=False)
    table = dataset_table(tmp_path, progress=False)
    assert len(table) == 2
    assert table["grade"].isna().all()
    assert table[["label1_ml", "WT_ml", "ET_ml"]].isna().all().all()
    assert (table["brain_ml"] > 0).all()
    with pytest.raises(BratsInputError, match="no case with a segmentation"):
        plot_label_volumes(table)


def test_plot_label_volumes(tiny_2017: Path) -> None:
    table = dataset_table(tiny_2017, progress=False)
    fig = plot_label_volumes(table)
    bars, boxes = fig.axes
    assert len(bars.patches) == 3 * len(table)  # one bar per label and case
    heights = np.array([p.get_height() for p in bars.patches]).reshape(3, -1)
    order = table.sort_values("WT_ml", kind="stable")
    assert heights.sum(axis=0) == pytest.approx(order["WT_ml"].to_numpy())
    assert [t.get_text() for t in bars.get_legend().get_texts()] == ["NCR/NET (1)", "ED (2)",
                                                                       "ET (4)"]
    assert [t.get_text() for t in boxes.get_xticklabels()] == ["WT", "TC", "ET"]
    plt.close(fig)


def test_plot_intensity_histograms(tiny_2017: Path) -> None:
    fig = plot_intensity_histograms(tiny_2017, bins=10, progress=False)
    assert [ax.get_title() for ax in fig.axes] == ["T1", "T1ce", "T2", "FLAIR"]
    assert [len(ax.lines) for ax in fig.axes] == [2, 2, 2, 2]
    image, _ = make_arrays(1)
    curve = fig.axes[2].lines[0]
    assert len(curve.get_xdata()) == 10
    values = image[2][image[2] != 0]
    assert curve.get_xdata()[0] > values.min() and curve.get_xdata()[-1] < values.max()
    assert np.sum(curve.get_ydata()) * (values.max() - values.min()) / 10 == pytest.approx(1.0)
    plt.close(fig)
    fig = plot_intensity_histograms(tiny_2017, cases=["Brats17_SYN_002_1"], progress=False)
    assert [line.get_label() for line in fig.axes[0].lines] == ["Brats17_SYN_002_1"]
    plt.close(fig)
    with pytest.raises(BratsInputError, match="no case Brats17_nope"):
        plot_intensity_histograms(tiny_2017, cases=["Brats17_nope"], progress=False)
