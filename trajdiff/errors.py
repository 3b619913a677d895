"""Errors a user can cause. Every message says what is wrong and what to do about it."""

from __future__ import annotations


class TrajdiffError(Exception):
    """Base class of every error trajdiff raises because of its input."""


class ShapeError(TrajdiffError, ValueError):
    """A tensor or array has the wrong shape or dtype."""


class DataError(TrajdiffError, ValueError):
    """Data contain values trajdiff cannot use (NaN, infinities, wrong types)."""


class PlanError(TrajdiffError, ValueError):
    """A noise-level plan is malformed or does not fit the sequence."""


class ConfigError(TrajdiffError, ValueError):
    """A configuration value is unknown or out of range."""


class CheckpointError(TrajdiffError, OSError):
    """A model directory is missing, truncated, corrupt or from an incompatible version."""


class CalibrationError(CheckpointError):
    """A model directory's calibration.json is invalid, unrecorded or does not match its recorded checksum."""


class SampleError(TrajdiffError, ValueError):
    """Sampling produced values that cannot be a forecast (NaN, infinities, absurd magnitudes)."""
