"""Kamnitsas et al. 2017 (EMMA): ensemble of DeepMedic, 3D FCN and 3D U-Net members.

Importing the package registers its networks (``deepmedic``, ``deepmedic_wide``, ``emma_fcn``,
``emma_unet``) in the core registry.
"""

from ensemble import deepmedic, dltk  # noqa: F401  (registration)
