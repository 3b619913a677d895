"""Columns by name: data read for a model are mapped to the columns it was trained on.

Why: a file whose columns come in another order (``time,z,x,y`` for a model trained on ``time,x,y,z``) or carry
other names would otherwise be read by position and forecast without complaint, with other numbers. The model's
encoder records its columns (`Encoder.columns`); `align_columns` puts the data's columns in that order (the
outputs then use the model's names) and refuses a missing or unexpected column with one line listing both sets.
Every api function that reads data for a model (forecast, evaluate, calibrate, impute, anomaly scores) calls it
right after the domain's loader.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from trajdiff.core.data import Episodes
from trajdiff.errors import DataError
from trajdiff.plugins.spec import Encoder

__all__ = ["align_columns"]

logger = logging.getLogger(__name__)

SHOWN = 10  # names listed per set in a message; longer sets end with "... N in all"


def _names(columns: list[str]) -> str:
    shown = ", ".join(columns[:SHOWN])
    return f"[{shown}{f', ... {len(columns)} in all' if len(columns) > SHOWN else ''}]"


def _label(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else "the data"


def align_columns(episodes: Episodes, encoder: Encoder, source: Any = None) -> Episodes:
    """``episodes`` with their columns in the order of the model's ``encoder.columns``: unchanged when they match
    (or the encoder records no names), reordered (with the per-column meta) when only the order differs, else a
    `DataError` naming ``source``, the columns expected and found, which are missing and which unexpected, and
    what to do."""
    expected = encoder.columns
    found = list(episodes.columns)
    if expected is None or list(expected) == found:
        return episodes
    expected = list(expected)
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    if missing or unexpected:
        differ = "; ".join(f"{what} {_names(names)}" for what, names in (("missing", missing),
                                                                         ("unexpected", unexpected)) if names)
        raise DataError(
            f"{_label(source)}: the columns do not match the model's: expected {_names(expected)} (any order), found "
            f"{_names(found)} ({differ}). Give data with the model's column names (rename or drop columns in the "
            "file), or read it with the load options the model was trained with (--load-option; e.g. columns=[...] "
            "picks columns where the domain's loader takes it)")
    logger.info("%s: columns %s reordered to the model's order %s", _label(source), _names(found), _names(expected))
    return episodes.reorder(expected)
