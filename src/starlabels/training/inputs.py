"""Network input for training: rows of :class:`TrainingData` → preprocessed, scaled tensors.

:class:`InputPipeline` owns what happens between the stored spectra and the network: the model's
:class:`~starlabels.preprocess.pipeline.PreprocessConfig` (the stored one wins; raw data get the
requested one applied per block, or once up front for in-memory data), noise augmentation of the
stored spectra, the :class:`~starlabels.data.normalization.LabelScaler` and
:class:`~starlabels.data.normalization.SpectrumScaler` fitted on the training rows (streaming, block
by block), and the conversion of a block to network input ``(n, 1, P)`` and standardised targets.
It draws no random numbers itself: augmentation uses the generator it is handed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from starlabels.constants import MISSING
from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid
from starlabels.core.instrument import find_grid
from starlabels.training.data_access import FLOAT, TrainingData
from starlabels.training.errors import TrainingError
from starlabels.utils import progress

__all__ = ["InputPipeline"]


class InputPipeline:
    """Preprocessing, augmentation and scaling of training rows.

    Parameters
    ----------
    data
        :class:`TrainingData`; in-memory raw data are preprocessed once here (``self.data`` is then
        the preprocessed copy).
    preprocess
        :class:`~starlabels.preprocess.pipeline.PreprocessConfig` (or its dict) to apply to raw
        blocks, or None when ``data`` is already network input. When ``data`` says it was
        preprocessed, its own config is kept and nothing is re-applied.
    chunk_rows, buffer_chunks
        A block is ``chunk_rows × buffer_chunks`` rows (reads, preprocessing, scaler fits).
    augment
        A :class:`~starlabels.data.augment.NoiseAugmentation` or None.
    """

    def __init__(
        self,
        data: TrainingData,
        preprocess: Any = None,
        *,
        chunk_rows: int = 1024,
        buffer_chunks: int = 4,
        augment: Any = None,
    ) -> None:
        self.data = data
        self.chunk_rows = int(chunk_rows)
        self.buffer_chunks = int(buffer_chunks)
        self.augment = augment
        self.label_scaler: Any = None
        self.spectrum_scaler: Any = None
        #: the config stored in the model, and the one applied to each block (None: nothing)
        self.preprocess, self.apply_preprocess = self._resolve_preprocess(preprocess)
        if self.apply_preprocess is not None and data.random_access:
            self.data = self._preprocess_in_memory(data)
            self.apply_preprocess = None

    @property
    def block_rows(self) -> int:
        """Rows read and preprocessed at once (``chunk_rows × buffer_chunks``)."""
        return self.chunk_rows * self.buffer_chunks

    # ---------------------------------------------------------------- preprocessing

    def _resolve_preprocess(self, preprocess: Any):
        """(config stored in the model, config applied to each block or None)."""
        from starlabels.preprocess.pipeline import PreprocessConfig

        if isinstance(preprocess, Mapping):
            preprocess = PreprocessConfig.from_dict(dict(preprocess))
        stored = self.data.preprocessing
        if stored is not None:
            stored_cfg = PreprocessConfig.from_dict(dict(stored))
            if preprocess is not None and preprocess.to_dict() != stored_cfg.to_dict():
                raise TrainingError(
                    "the training data were already preprocessed with "
                    f"{stored_cfg.to_dict()}, which differs from the requested {preprocess.to_dict()}"
                )
            return stored_cfg, None
        grid = self.data.grid
        if preprocess is not None and grid is not None and not preprocess.accepts(grid):
            raise TrainingError(
                f"the training spectra are on grid {grid.describe()}, but the preprocessing takes "
                f"{preprocess.grid.describe()}; ingest them onto it (resample) or set [preprocess] "
                "instrument/input_grid to match"
            )
        return preprocess, preprocess

    def preprocess_block(self, flux: np.ndarray, error: np.ndarray | None, bitmask: np.ndarray | None):
        """Raw block → network-input block ``(flux, error)``, (n, P_in) float32 each, via the
        PreprocessConfig (unchanged when nothing is applied)."""
        if self.apply_preprocess is None:
            return flux, error
        if error is None:
            raise TrainingError("preprocessing needs flux errors; the training data have none")
        f, e = self.apply_preprocess.apply(flux, error, bitmask, grid=self.data.grid)
        return np.asarray(f, dtype=FLOAT), np.asarray(e, dtype=FLOAT)

    def _preprocess_in_memory(self, data: TrainingData) -> TrainingData:
        """Apply the PreprocessConfig once to in-memory data, block by block."""
        rows = np.arange(data.n_rows)
        step = self.block_rows
        parts_f, parts_e = [], []
        for a in progress(range(0, data.n_rows, step), desc="preprocess", unit="block"):
            f, e = self.preprocess_block(*data.read(rows[a:a + step]))
            parts_f.append(f)
            parts_e.append(e)
        flux, err = np.concatenate(parts_f), np.concatenate(parts_e)
        out = TrainingData.from_arrays(
            flux, data.labels, data.label_names, error=err, label_errors=data.label_errors,
            label_units=data.label_units, groups=data.groups,
            grid=getattr(self.preprocess, "output_grid", None),
            preprocessing=self.preprocess.to_dict(),
        )
        out.files = data.files
        return out

    def iter_blocks(
        self, rows: np.ndarray, desc: str = ""
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Preprocessed blocks ``(flux, error)`` of ``rows`` in file order (fitting, evaluation)."""
        step = self.block_rows
        for a in progress(range(0, len(rows), step), desc=desc, unit="block"):
            yield self.preprocess_block(*self.data.read(rows[a:a + step]))

    # ---------------------------------------------------------------- scalers

    def fit_scalers(self, train_rows: np.ndarray, spectrum_scaling: str) -> None:
        """Fit :attr:`label_scaler` and :attr:`spectrum_scaler` (mode ``spectrum_scaling``) on the
        training rows; the spectrum scaler streams block by block (float64 sums)."""
        from starlabels.data.normalization import LabelScaler, SpectrumScaler

        self.label_scaler = LabelScaler(names=self.data.label_names).fit(self.data.labels[train_rows])
        scaler = SpectrumScaler(mode=spectrum_scaling)
        if scaler.mode != "none":
            for flux, error in self.iter_blocks(train_rows, desc="spectrum mean"):
                scaler.partial_fit(flux, error)
            scaler.finalise()
        self.spectrum_scaler = scaler

    def scaler_state(self) -> dict[str, Any]:
        """Both scalers as a checkpointable dict (see :meth:`restore_scalers`)."""
        return {"labels": self.label_scaler.to_dict(), "spectra": self.spectrum_scaler.to_dict(),
                "spectra_tensors": self.spectrum_scaler.state_dict()}

    def restore_scalers(self, state: Mapping[str, Any]) -> None:
        """Scalers from :meth:`scaler_state`'s dict (a resumed run)."""
        from starlabels.data.normalization import LabelScaler, SpectrumScaler

        self.label_scaler = LabelScaler.from_dict(state["labels"])
        self.spectrum_scaler = SpectrumScaler.from_state(state["spectra"], state["spectra_tensors"])

    # ---------------------------------------------------------------- rows → network

    def targets(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standardised labels and label errors (n, L) for ``rows``; missing stays MISSING and an
        unknown error is 0."""
        y = self.data.labels[rows]
        e = self.data.label_errors[rows]
        ys = np.asarray(self.label_scaler.transform(y), dtype=FLOAT)
        es = np.asarray(self.label_scaler.transform_errors(e), dtype=FLOAT)
        es = np.where((es == MISSING) | ~(es >= 0), 0.0, es).astype(FLOAT)  # unknown error: 0
        return ys, es

    def to_input(self, flux: np.ndarray) -> torch.Tensor:
        """(n, P) float32 numpy → (n, 1, P) tensor after the spectrum scaler (CPU)."""
        x = np.asarray(self.spectrum_scaler.transform(flux), dtype=FLOAT)
        return torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1)

    def read(self, rows: np.ndarray, rng: np.random.Generator | None):
        """``data.read(rows)`` → ``(flux, error, bitmask)``, noise-augmented with ``rng`` when
        augmentation is configured (and ``rng`` given).

        Augmentation acts on the spectra as stored (raw, or already preprocessed when the data
        say so or were preprocessed in memory), before the per-block preprocessing.
        """
        flux, error, bitmask = self.data.read(rows)
        if self.augment is None or rng is None:
            return flux, error, bitmask
        if error is None:
            raise TrainingError("noise augmentation needs flux errors; the training data have none")
        flux, error = self.augment(flux, error, rng, bitmask, bitmask_def=self.bitmask_definition())
        return flux, error, bitmask

    def bitmask_definition(self) -> PixelBitmask | None:
        """The bitmask definition of the stored spectra: the preprocessing's instrument's, else the
        instrument owning the data's grid, else None (APOGEE_PIXMASK)."""
        if self.preprocess is not None:
            return self.preprocess.bitmask
        grid = getattr(self.data, "grid", None)
        known = find_grid(grid) if isinstance(grid, Grid) else None
        return None if known is None else known[0].bitmask()
