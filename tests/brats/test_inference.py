"""Whole-volume and sliding-window inference and mirror TTA, checked with known predictors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from brats.errors import BratsInputError
from brats.inference import (
    MIRROR_COMBINATIONS,
    dropout_enabled,
    mirror_combinations,
    padded_shape,
    predict_logits,
    predict_probabilities,
    predict_with_tta,
    regions_to_class_probabilities,
)

SHAPE = (13, 11, 9)  # odd on purpose: every axis needs padding


def make_image(shape=SHAPE, channels: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(channels, *shape)).astype(np.float32)


class Pointwise(nn.Module):
    """A 1×1×1 convolution with fixed weights: output at a voxel depends on that voxel only."""

    def __init__(self, in_channels: int = 4, out_channels: int = 4, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv3d(in_channels, out_channels, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=gen))
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=gen))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.conv(x)

    def numpy(self, image: np.ndarray) -> np.ndarray:
        """The same map in numpy on a (C, X, Y, Z) array → (K, X, Y, Z) float64."""
        w = self.conv.weight.detach().numpy()[:, :, 0, 0, 0].astype(np.float64)
        b = self.conv.bias.detach().numpy().astype(np.float64)
        return np.einsum("kc,cxyz->kxyz", w, image) + b[:, None, None, None]


def ramp(k: int, shape) -> np.ndarray:
    """(k, X, Y, Z) position term that depends on the voxel index only, not on the volume size."""
    i, j, m = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    return np.stack([0.3 * (c + 1) * i - 0.2 * j + 0.1 * (c - 1) * m for c in range(k)])


class Positional(Pointwise):
    """Pointwise conv plus a position ramp: not flip-equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        term = torch.from_numpy(ramp(self.conv.out_channels, x.shape[2:])).float()
        return self.conv(x) + term[None]

    def numpy(self, image: np.ndarray) -> np.ndarray:
        return super().numpy(image) + ramp(self.conv.out_channels, image.shape[1:])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(0))
    return e / e.sum(0)


def direct(network: nn.Module, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return network(torch.from_numpy(image)[None])[0].numpy()


# ---------------------------------------------------------------------------------------------- whole


@pytest.mark.parametrize("shape, pad_mode, expected", [
    ((13, 16, 1), "isensee", (16, 32, 16)),
    ((13, 16, 1), "minimal", (16, 16, 16)),
    ((139, 170, 144), "isensee", (144, 176, 160)),
    ((139, 170, 144), "minimal", (144, 176, 144)),
])
def test_padded_shape(shape, pad_mode, expected):
    assert padded_shape(shape, 16, pad_mode) == expected


@pytest.mark.parametrize("pad_mode", ["isensee", "minimal"])
@pytest.mark.parametrize("shape", [SHAPE, (16, 8, 5), (1, 17, 32)])
def test_whole_mode_equals_direct_output(pad_mode, shape):
    net = Pointwise()
    image = make_image(shape)
    logits = predict_logits(net, image, mode="whole", pad_mode=pad_mode)
    assert [tuple(x.shape) for x in net.seen] == [(1, 4, *padded_shape(shape, 16, pad_mode))]
    assert isinstance(logits, torch.Tensor) and logits.dtype == torch.float32
    assert logits.device.type == "cpu" and tuple(logits.shape) == (4, *shape)
    np.testing.assert_allclose(logits.numpy(), direct(net, image), atol=1e-5)


def test_whole_mode_crops_at_the_upper_end():
    # position-dependent output: any misalignment of the crop would change the values
    net = Positional()
    image = make_image()
    np.testing.assert_allclose(predict_logits(net, image).numpy(), net.numpy(image), atol=1e-4)


def test_whole_mode_pads_with_the_corner_value_per_channel():
    net = Pointwise()
    image = make_image()
    image[:, 0, 0, 0] = [5.0, -3.0, 0.25, 7.0]
    predict_logits(net, image, pad_mode="isensee")
    seen = net.seen[-1][0].numpy()  # (C, 16, 16, 16)
    assert seen.shape == (4, 16, 16, 16)
    np.testing.assert_array_equal(seen[:, :13, :11, :9], image)
    for c, value in enumerate(image[:, 0, 0, 0]):
        padding = np.ones(seen.shape[1:], bool)
        padding[:13, :11, :9] = False
        np.testing.assert_array_equal(seen[c][padding], value)


def test_torch_input_and_divisible_by():
    net = Pointwise()
    image = make_image()
    logits = predict_logits(net, torch.from_numpy(image).double(), divisible_by=8, pad_mode="minimal")
    assert net.seen[-1].dtype == torch.float32 and net.seen[-1].shape[2:] == (16, 16, 16)
    np.testing.assert_allclose(logits.numpy(), direct(net, image), atol=1e-5)


# ------------------------------------------------------------------------------------- sliding window


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_sliding_window_equals_direct_output(overlap, blend):
    net = Pointwise()
    image = make_image((17, 12, 9))
    logits = predict_logits(net, image, mode="sliding_window", roi_size=(8, 8, 8), overlap=overlap,
                            blend=blend, sw_batch_size=2)
    assert all(tuple(x.shape[2:]) == (8, 8, 8) for x in net.seen)
    assert tuple(logits.shape) == (4, 17, 12, 9) and logits.dtype == torch.float32
    np.testing.assert_allclose(logits.numpy(), direct(net, image), atol=1e-5)


def test_sliding_window_larger_than_volume():
    net = Pointwise()
    image = make_image((6, 5, 7))
    logits = predict_logits(net, image, mode="sliding_window", roi_size=8)
    np.testing.assert_allclose(logits.numpy(), direct(net, image), atol=1e-5)


def test_bfloat16_autocast_on_cpu_is_close_to_float32():
    net = Pointwise()
    image = make_image()
    for mode in ("whole", "sliding_window"):
        ref = predict_probabilities(net, image, mode=mode, roi_size=8)
        low = predict_probabilities(net, image, mode=mode, roi_size=8, amp_dtype=torch.bfloat16)
        assert low.dtype == np.float32
        np.testing.assert_allclose(low, ref, atol=3e-2)


# ---------------------------------------------------------------------------------------- activation


def test_softmax_probabilities():
    net = Pointwise()
    image = make_image()
    probs = predict_probabilities(net, image)
    assert probs.shape == (4, *SHAPE) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, softmax(net.numpy(image)), atol=1e-5)


def test_sigmoid_region_probabilities():
    net = Pointwise(out_channels=3)
    image = make_image()
    probs = predict_probabilities(net, image, activation="sigmoid_regions")
    expected = regions_to_class_probabilities(1 / (1 + np.exp(-net.numpy(image))))
    assert probs.shape == (4, *SHAPE)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    assert probs.min() >= 0


@pytest.mark.parametrize("kwargs, message", [
    ({"activation": "sigmoid_regions"}, "3 output channels"),
    ({"activation": "sigmoid"}, "unknown activation"),
    ({"mode": "patches"}, "unknown mode"),
    ({"blend": "linear"}, "unknown blend"),
    ({"pad_mode": "reflect"}, "unknown pad_mode"),
    ({"amp_dtype": torch.float64}, "amp_dtype"),
    ({"mode": "sliding_window", "overlap": 1.0}, "overlap"),
    ({"mode": "sliding_window", "roi_size": (8, 8)}, "roi_size"),
])
def test_bad_options_raise(kwargs, message):
    with pytest.raises(BratsInputError, match=message):
        predict_probabilities(Pointwise(), make_image(), **kwargs)


def test_bad_image_and_tuple_output_raise():
    with pytest.raises(BratsInputError, match="C, X, Y, Z"):
        predict_logits(Pointwise(), np.zeros(SHAPE, np.float32))

    class DeepSupervision(Pointwise):
        def forward(self, x):
            return self.conv(x), self.conv(x)[:, :, ::2, ::2, ::2]

    with pytest.raises(TypeError, match="deep supervision"):
        predict_logits(DeepSupervision(), make_image())


# ----------------------------------------------------------------------------------------------- TTA


def test_mirror_combinations():
    assert len(MIRROR_COMBINATIONS) == len(set(MIRROR_COMBINATIONS)) == 8
    assert MIRROR_COMBINATIONS[0] == ()
    assert mirror_combinations() == list(MIRROR_COMBINATIONS)
    assert mirror_combinations(num_mirrors=4) == [(), (0,), (1,), (2,)]
    assert mirror_combinations((0, 2)) == [(), (0,), (2,), (0, 2)]
    assert mirror_combinations((1,), num_mirrors=8) == [(), (1,)]
    assert mirror_combinations((2, 0), num_mirrors=3) == [(), (0,), (2,)]
    with pytest.raises(BratsInputError, match="mirror_axes"):
        mirror_combinations((3,))
    with pytest.raises(BratsInputError, match="num_mirrors"):
        mirror_combinations(num_mirrors=0)


def test_tta_with_a_flip_equivariant_network_equals_one_pass():
    net = Pointwise()
    image = make_image()
    single = predict_probabilities(net, image)
    np.testing.assert_allclose(predict_with_tta(net, image), single, atol=1e-5)
    np.testing.assert_allclose(predict_with_tta(net, image, mode="sliding_window", roi_size=8,
                                                overlap=0.25), single, atol=1e-5)


def manual_tta(net: Positional, image: np.ndarray, combos) -> np.ndarray:
    total = np.zeros((4, *image.shape[1:]))
    for combo in combos:
        axes = tuple(a + 1 for a in combo)
        probs = softmax(net.numpy(np.flip(image, axes)))
        total += np.flip(probs, axes)
    return total / len(combos)


@pytest.mark.parametrize("mirror_axes, num_mirrors, combos", [
    ((0, 1, 2), 8, MIRROR_COMBINATIONS),
    ((0, 1, 2), 1, [()]),
    ((0, 1, 2), 3, [(), (0,), (1,)]),
    ((1, 2), 8, [(), (1,), (2,), (1, 2)]),
    ((2,), 8, [(), (2,)]),
])
def test_tta_averages_unflipped_predictions(mirror_axes, num_mirrors, combos):
    net = Positional()
    image = make_image()
    probs = predict_with_tta(net, image, mirror_axes=mirror_axes, num_mirrors=num_mirrors)
    assert probs.shape == (4, *SHAPE) and probs.dtype == np.float32
    assert len(net.seen) == len(combos)
    np.testing.assert_allclose(probs, manual_tta(net, image, combos), atol=1e-5)
    if len(combos) > 1:  # the position term really makes the mirrors differ
        assert np.abs(probs - manual_tta(net, image, [()])).max() > 1e-2


# ---------------------------------------------------------------------------------- test-time dropout


class WithDropout(nn.Module):
    """1×1×1 conv → BatchNorm → InstanceNorm → Dropout → 1×1×1 conv; records flags at each forward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv3d(4, 8, 1), nn.BatchNorm3d(8), nn.InstanceNorm3d(8),
                                  nn.Dropout3d(0.5), nn.Conv3d(8, 4, 1))
        self.flags: list[dict[str, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.flags.append({type(m).__name__: m.training for m in self.body})
        return self.body(x)


def training_flags(net: nn.Module) -> list[bool]:
    return [m.training for m in net.modules()]


@pytest.mark.parametrize("initially_training", [True, False])
def test_test_time_dropout(initially_training):
    net = WithDropout().train(initially_training)
    net.body[1].train(not initially_training)  # mixed flags must come back as they were
    before = training_flags(net)
    image = make_image((8, 8, 8))
    kwargs = {"num_mirrors": 1, "mode": "whole", "pad_mode": "minimal", "divisible_by": 1}

    off = [predict_with_tta(net, image, **kwargs) for _ in range(2)]
    np.testing.assert_array_equal(off[0], off[1])
    assert training_flags(net) == before
    assert all(not any(f.values()) for f in net.flags)  # all in eval mode

    net.flags.clear()
    on = [predict_with_tta(net, image, test_time_dropout=True, **kwargs) for _ in range(2)]
    assert np.abs(on[0] - on[1]).max() > 1e-3
    assert training_flags(net) == before
    for flags in net.flags:
        assert flags == {"Conv3d": False, "BatchNorm3d": False, "InstanceNorm3d": False, "Dropout3d": True}

    net.flags.clear()
    averaged = predict_with_tta(net, image, test_time_dropout=True, repeats=3, **kwargs)
    assert len(net.flags) == 3 and averaged.shape == (4, 8, 8, 8)
    net.flags.clear()
    predict_with_tta(net, image, repeats=3, **kwargs)  # identical passes are run once
    assert len(net.flags) == 1


def test_dropout_enabled_restores_flags_on_error():
    net = WithDropout().train()
    with pytest.raises(RuntimeError), dropout_enabled(net):
        assert [m.training for m in net.body] == [False, False, False, True, False]
        raise RuntimeError
    assert all(training_flags(net))


def test_tta_bad_repeats():
    with pytest.raises(BratsInputError, match="repeats"):
        predict_with_tta(Pointwise(), make_image(), repeats=0)


class ValidConv(nn.Module):
    """Two valid 3×3×3 convolutions: the output is 2 voxels smaller per side than the input."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.Sequential(nn.Conv3d(4, 6, 3), nn.ReLU(), nn.Conv3d(6, 4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@pytest.mark.parametrize("roi, batch", [(9, 1), ((10, 8, 12), 3), (30, 2)])
def test_tiles_equal_one_pass_over_the_zero_padded_volume(roi, batch):
    net = ValidConv().eval()
    image = make_image()
    with torch.no_grad():
        expected = net(nn.functional.pad(torch.from_numpy(image), (2,) * 6)[None])[0]
    out = predict_logits(net, image, mode="tiles", roi_size=roi, margin=2, sw_batch_size=batch)
    assert out.shape == (4, *SHAPE)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_tiles_reject_a_wrong_margin_or_a_too_small_window():
    net = ValidConv().eval()
    with pytest.raises(BratsInputError, match="expected \\(7, 7, 7\\)"):
        predict_logits(net, make_image(), mode="tiles", roi_size=9, margin=1)
    with pytest.raises(BratsInputError, match="leaves no output"):
        predict_logits(net, make_image(), mode="tiles", roi_size=4, margin=2)
