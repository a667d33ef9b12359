"""Data layer: releases, label conventions, case discovery, loading and validation."""
