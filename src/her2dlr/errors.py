"""Exception types. Every message names the file, row or key at fault and what was expected."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class Her2dlrError(Exception):
    """Base class of the toolkit's own errors (shown to the user without a traceback)."""


class InputError(Her2dlrError, ValueError):
    """Bad input data: a file, a table row, a column or a value that cannot be used."""


class StudyFileError(Her2dlrError, ValueError):
    """The study file is invalid: names the key, the value and what is allowed."""


def nearest(value: str, options: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' when an option is close to ``value``, else ''."""
    match = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return f" Did you mean '{match[0]}'?" if match else ""
