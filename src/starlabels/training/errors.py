"""The training layer's error: a run that cannot start or continue."""

from __future__ import annotations

from starlabels.errors import StarlabelsError

__all__ = ["TrainingError"]


class TrainingError(StarlabelsError):
    """Training cannot start or continue (bad setup, non-finite loss, checkpoint mismatch)."""
