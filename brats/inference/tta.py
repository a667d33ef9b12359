"""Mirror test-time augmentation and (optionally) Monte-Carlo dropout at test time.

Isensee et al. 2017 averaged, per fold model, the softmax of all 8 mirror combinations of the three
spatial axes, each prediction un-flipped, with dropout left on (so each pass is a Monte-Carlo
dropout sample), repeated 2× (validation) or 3× (test) on an input duplicated to a batch of 2: 32 or
48 samples. ``predict_with_tta(…, test_time_dropout=True, repeats=4)`` (or 6) draws the same number
of samples, one per forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from brats.errors import BratsInputError
from brats.inference.combine import MeanAccumulator
from brats.inference.sliding_window import as_image_tensor, predict_probabilities

logger = logging.getLogger(__name__)

#: The 8 subsets of the spatial axes (0 = X, 1 = Y, 2 = Z) to flip, no flip first, then by size
#: and lexicographically (the order of ``itertools.combinations``, as in nnU-Net):
#: (), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2).
MIRROR_COMBINATIONS: tuple[tuple[int, ...], ...] = (
    (), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2))

_DROPOUT_TYPES = (nn.modules.dropout._DropoutNd,)


def mirror_combinations(mirror_axes: Sequence[int] = (0, 1, 2),
                        num_mirrors: int = 8) -> list[tuple[int, ...]]:
    """The first ``num_mirrors`` entries of :data:`MIRROR_COMBINATIONS` that flip only ``mirror_axes``.

    ``num_mirrors`` larger than the number available (2 ** len(mirror_axes)) takes them all, e.g.
    ``mirror_combinations((0, 2))`` → ``[(), (0,), (2,), (0, 2)]``.

    Raises:
        BratsInputError: an axis outside 0–2, or ``num_mirrors`` < 1.
    """
    axes = set(mirror_axes)
    if not axes <= {0, 1, 2}:
        raise BratsInputError(f"mirror_axes must be spatial axes among 0, 1, 2; got {tuple(mirror_axes)}")
    if num_mirrors < 1:
        raise BratsInputError(f"num_mirrors must be >= 1, got {num_mirrors}")
    return [combo for combo in MIRROR_COMBINATIONS if set(combo) <= axes][:num_mirrors]


@contextmanager
def _inference_flags(network: nn.Module, dropout: bool) -> Iterator[nn.Module]:
    saved = [(module, module.training) for module in network.modules()]
    try:
        network.eval()
        if dropout:
            for module in network.modules():
                if isinstance(module, _DROPOUT_TYPES):
                    module.train()
        yield network
    finally:
        for module, training in saved:
            module.training = training


@contextmanager
def dropout_enabled(network: nn.Module) -> Iterator[nn.Module]:
    """Put ``network`` in eval mode except its dropout modules, which sample as in training.

    This is the Isensee 2017 quirk (Monte-Carlo dropout at test time): normalisation layers
    (BatchNorm, InstanceNorm) use their eval behaviour while every ``nn.Dropout*`` module drops.
    Dropout written as ``F.dropout(x, training=self.training)`` inside another module follows that
    module's flag, which is eval. Every module's flag is restored on exit. Seed ``torch`` for
    reproducible samples.

    Example:
        >>> with dropout_enabled(net):
        ...     sample = predict_probabilities(net, image)
    """
    with _inference_flags(network, dropout=True):
        yield network


def tta_samples(
    network: nn.Module,
    image: np.ndarray | torch.Tensor,
    *,
    mirror_axes: Sequence[int] = (0, 1, 2),
    num_mirrors: int = 8,
    test_time_dropout: bool = False,
    repeats: int = 1,
    activation: str = "softmax",
    **window_kwargs,
) -> Iterator[np.ndarray]:
    """The test-time-augmentation samples, one at a time: for each of ``repeats`` passes and each
    of :func:`mirror_combinations` (``mirror_axes``, ``num_mirrors``), the image is flipped,
    predicted with :func:`~brats.inference.sliding_window.predict_probabilities` and flipped back.
    The network is in eval mode meanwhile (with dropout modules sampling when
    ``test_time_dropout``); its flags are restored afterwards.

    Args:
        network: (B, C, X, Y, Z) → (B, K, X, Y, Z) logits.
        image: (C, X, Y, Z) array or tensor.
        mirror_axes: spatial axes that may be flipped (0 = X, 1 = Y, 2 = Z).
        num_mirrors: how many combinations to use, from the start of :data:`MIRROR_COMBINATIONS`;
            1 is no TTA, 8 (with all axes) is Isensee's.
        test_time_dropout: keep dropout on (Isensee 2017); each pass is then a random sample.
        repeats: passes over all mirrors. Without test-time dropout every repeat would give the
            same maps, so only one is run.
        activation: ``"softmax"`` (labels) or ``"sigmoid_regions"`` (WT, TC, ET regions).
        **window_kwargs: keyword arguments of
            :func:`~brats.inference.sliding_window.predict_logits` (mode, roi_size, device, …).

    Yields:
        (4, X, Y, Z) float32 class probabilities of one sample.

    Raises:
        BratsInputError: bad ``mirror_axes``, ``num_mirrors`` or ``repeats``, or a bad window option.
    """
    combos = mirror_combinations(mirror_axes, num_mirrors)
    if repeats < 1:
        raise BratsInputError(f"repeats must be >= 1, got {repeats}")
    if repeats > 1 and not test_time_dropout:
        logger.debug("repeats=%d without test-time dropout: identical passes, running one", repeats)
        repeats = 1
    x = as_image_tensor(image).to(window_kwargs.get("device", "cpu"))
    with _inference_flags(network, dropout=test_time_dropout):
        for _ in range(repeats):
            for combo in combos:
                dims = [axis + 1 for axis in combo]
                flipped = torch.flip(x, dims) if combo else x
                probs = predict_probabilities(network, flipped, activation=activation, **window_kwargs)
                del flipped
                yield np.flip(probs, dims) if combo else probs


def predict_with_tta(network: nn.Module, image: np.ndarray | torch.Tensor, *,
                     on_sample: Callable[[np.ndarray], None] | None = None,
                     **tta_kwargs) -> np.ndarray:
    """Mean class probabilities over the samples of :func:`tta_samples` (mirror flips and
    Monte-Carlo dropout repeats; same arguments). Memory holds one running sum; ``on_sample``
    also sees every sample (e.g. :meth:`brats.uncertainty.RegionMoments.add`).

    Returns:
        (4, X, Y, Z) float32 class probabilities.
    """
    acc = MeanAccumulator()
    for index, sample in enumerate(tta_samples(network, image, **tta_kwargs)):
        acc.add(sample, name=f"TTA sample {index}")
        if on_sample is not None:
            on_sample(sample)
    return acc.mean()
