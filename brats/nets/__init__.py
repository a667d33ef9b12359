"""Networks: the registry (``build_network("isensee_unet")``), shared blocks and the core architectures.

Every network maps a (B, C, X, Y, Z) image to (B, K, X', Y', Z') logits (no softmax); with K = 4
the channels are the canonical classes 0 background, 1 NCR/NET, 2 ED, 3 ET. Method packages add
theirs with :func:`register_network`.
"""

from __future__ import annotations

from brats.nets.isensee_unet import IsenseeUNet  # registers "isensee_unet"
from brats.nets.registry import NETWORKS, build_network, register_network

__all__ = ["NETWORKS", "IsenseeUNet", "build_network", "register_network"]
