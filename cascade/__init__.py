"""Wang et al. 2017: cascaded anisotropic networks (WNet → TNet → ENet) over three views."""
