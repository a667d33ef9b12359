"""Kamnitsas et al. 2017 (EMMA): ensemble of DeepMedic, 3D FCN and 3D U-Net members."""
