"""The training layer's errors: a run that cannot start or continue, a bad configuration value."""

from __future__ import annotations

from starlabels.errors import StarlabelsError

__all__ = ["ConfigError", "TrainingError"]


class TrainingError(StarlabelsError):
    """Training cannot start or continue (bad setup, non-finite loss, checkpoint mismatch)."""


class ConfigError(StarlabelsError, ValueError):
    """A training configuration value is missing, misspelt or out of range."""
