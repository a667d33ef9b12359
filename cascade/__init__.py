"""Wang et al. 2017: cascaded anisotropic networks (WNet → TNet → ENet) over three views.

Importing the package registers its networks (``wang_wnet``, ``wang_tnet``, ``wang_enet``) and
its loss (``wang_dice``) in the core registries.
"""

from cascade import losses, nets  # noqa: F401  (registration)
