"""Entry configs, one ``<entry>.yaml`` per reproduced entry, shipped as package data.

The folder stays ``submissions/`` in the repository; :mod:`brats.entries` finds the files with
:mod:`importlib.resources`, so an installed wheel finds its own copies.
"""
