"""Wang et al. 2017: cascaded anisotropic networks (WNet → TNet → ENet) over three views.

Importing the package registers its networks (``wang_wnet``, ``wang_tnet``, ``wang_enet``), its
loss (``wang_dice``) and its inference rule (``cascade``) in the core registries.
"""

from cascade import losses, nets, pipeline  # noqa: F401  (registration)
