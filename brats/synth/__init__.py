"""Synthetic BraTS generator on MNI152 anatomy."""
