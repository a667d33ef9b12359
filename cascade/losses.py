"""The Dice loss of Wang et al. 2017 (NiftyNet 0.2 ``LossFunction``, type "Dice"), as ``"wang_dice"``.

Importing this module registers it in the core loss registry (:func:`brats.losses.build_loss`).
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import nn

from brats.errors import BratsInputError
from brats.losses import register_loss


@register_loss("wang_dice", target="labels")
class WangDiceLoss(nn.Module):
    """Soft Dice with squared predictions, background included, summed over the whole batch.

    For each class k, with p the softmax output and g the one-hot target, sums over every voxel of
    every sample of the batch jointly::

        Dice_k = 2 Σ p_k·g_k / (Σ p_k² + Σ g_k + 1e-5),    loss = 1 − mean_k Dice_k

    k runs over all classes, background included: with Wang's two classes the loss averages the
    background and the foreground Dice. A perfect prediction scores ≈ 0 (exactly
    ``1e-5 / (2 Σ g_k + 1e-5)`` per class away from it); a batch without any foreground voxel
    scores at least 0.5 however good the prediction, which is why the original sampler redraws such
    batches. This is NiftyNet 0.2.0's ``dice`` (the version the original names; its weight map
    is ignored there, so there is none here), computed as MONAI ``DiceLoss(include_background=True,
    to_onehot_y=True, softmax=True, squared_pred=True, batch=True, smooth_nr=0, smooth_dr=1e-5)``.
    The sign follows NiftyNet (``1 − Dice``), not the core Dice losses (``−Dice``). It runs in float32
    with autocast disabled.

    Args:
        smooth_dr: denominator smoothing (1e-5 in NiftyNet).

    Example:
        >>> loss_fn = build_loss("wang_dice")
        >>> loss = loss_fn(net(slab), target)  # (B, 2, 11, H, W) logits, (B, 11, H, W) int64 in {0, 1}
    """

    def __init__(self, smooth_dr: float = 1e-5) -> None:
        super().__init__()
        if smooth_dr < 0:
            raise ValueError(f"smooth_dr must be >= 0, got {smooth_dr}")
        self.dice = DiceLoss(include_background=True, to_onehot_y=True, softmax=True, squared_pred=True,
                             batch=True, smooth_nr=0.0, smooth_dr=smooth_dr)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of a batch.

        Args:
            logits: (B, C, D, H, W) float logits, C ≥ 2 (2 for WNet, TNet, ENet).
            target: (B, D, H, W) integer class indices in [0, C), e.g. int64 in {0, 1}.

        Returns:
            Scalar float32 loss in [0, 1].

        Raises:
            BratsInputError: shapes that do not match, fewer than 2 channels, or a float target.
        """
        if logits.ndim != 5 or target.ndim != 4 or logits.shape[0] != target.shape[0] \
                or logits.shape[2:] != target.shape[1:]:
            raise BratsInputError(
                "wang_dice: logits must be (B, C, D, H, W) and target (B, D, H, W) with the same B, D, H, "
                f"W; got {tuple(logits.shape)} and {tuple(target.shape)}")
        if logits.shape[1] < 2:
            raise BratsInputError(f"wang_dice: needs at least 2 class channels, got {logits.shape[1]}")
        if target.is_floating_point() or target.is_complex():
            raise BratsInputError(f"wang_dice: target must hold integer class indices, got {target.dtype}")
        with torch.autocast(logits.device.type, enabled=False):
            return self.dice(logits.float(), target.unsqueeze(1))
