"""Preprocessing: brain crop, z-scoring, the training cache and its exact inverse."""
