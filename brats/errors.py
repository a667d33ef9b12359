"""The one exception type for problems with the user's input."""

from __future__ import annotations


class BratsInputError(ValueError):
    """Bad input the user can fix: a missing or corrupt file, mismatched geometry, an unknown label.

    The message names the file or key, what was expected and what was found. The CLI prints it as
    one line without a traceback and exits with status 2.
    """
