"""Optimisers torch does not ship: DeepMedic's RMSProp with (normalised) Nesterov momentum."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class RMSpropNesterov(torch.optim.Optimizer):
    """RMSProp with Nesterov momentum, the update rule of DeepMedic (v0.6, ``cnn3d.py``).

    Per parameter w with gradient g, at every step::

        a ← ρ·a + (1 − ρ)·g²                 (running mean of squared gradients)
        s = lr · g / sqrt(a + ε)             (the RMSProp step)
        v ← μ·v − c·s                        (velocity; c = 1 − μ "normalised", else 1)
        w ← w + μ·v − c·s                    (Nesterov look-ahead)

    DeepMedic's BraTS configuration: lr 1e-3, ρ 0.9, ε 1e-4, μ 0.6, normalised (deepmedic/deepmedic
    @8ae281d, v0.6 ``trainConfig.cfg``).
    With μ = 0 this is plain RMSProp with ε inside the square root. Weight decay is not part of
    the rule: use the trainer's ``optim.l1``/``optim.l2`` penalties, as DeepMedic did.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        rho: decay of the squared-gradient average.
        eps: added to the average inside the square root.
        momentum: μ in [0, 1).
        normalized: scale the step by 1 − μ (DeepMedic's ``momNonNorm0orNormalized1 = 1``).
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict], lr: float = 1e-3,
                 rho: float = 0.9, eps: float = 1e-4, momentum: float = 0.6,
                 normalized: bool = True) -> None:
        if lr <= 0 or not 0 <= rho < 1 or eps <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"need lr > 0, 0 <= rho < 1, eps > 0, 0 <= momentum < 1; got lr={lr}, "
                             f"rho={rho}, eps={eps}, momentum={momentum}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, momentum=momentum,
                                      normalized=normalized))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One update of every parameter with a gradient; returns the closure's loss if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            mu, rho = group["momentum"], group["rho"]
            scale = 1 - mu if group["normalized"] else 1.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                    state["velocity"] = torch.zeros_like(p)
                square_avg, velocity = state["square_avg"], state["velocity"]
                square_avg.mul_(rho).addcmul_(p.grad, p.grad, value=1 - rho)
                step = p.grad / (square_avg + group["eps"]).sqrt() * group["lr"]
                velocity.mul_(mu).sub_(step, alpha=scale)
                p.add_(velocity, alpha=mu).sub_(step, alpha=scale)
        return loss
