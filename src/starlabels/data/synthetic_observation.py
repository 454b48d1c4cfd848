"""Continuum, noise and defects of the built-in generator's spectra (:class:`GeneratorObservation`,
a mixin of :class:`starlabels.data.synthetic.SyntheticGenerator`; the recipe is in that module's
docstring: **Continuum**, **Noise**, **Defects**). Flux in "1e-17 erg/s/cm²/Å", wavelengths in
vacuum Å, velocities in km/s."""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["C_KMS", "F0_5500", "HC_K", "GeneratorObservation"]

C_KMS = 299792.458
HC_K = 1.438777e8  # hc/k in Å·K
#: f_λ (1e-17 erg/s/cm²/Å) of a 0-mag star at 5,500 Å (Vega-like), for the optical flux scale
F0_5500 = 3.63e8


class GeneratorObservation:
    """Observation of noise-free spectra by a generator. Needs the generator's ``observing``,
    ``grid``, ``wavelength``, ``sky_wavelength``, ``sky_strength``, ``_detector`` and
    ``_throughput``."""

    def _continuum(
        self, teff: np.ndarray, mag: np.ndarray, rng: np.random.Generator, a_h: np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, P) continuum: a blackbody slope at Teff times, in the H band, a per-detector throughput
        with a per-star ripple scaled by the H magnitude (``mag``); for flux-calibrated optical
        spectra, the reddening 10^(−0.4 A_λ) (``a_h``: A_H per star) and a per-arm calibration
        ripple of ~2 %, scaled by the G magnitude (``mag``) at 5,500 Å."""
        wl = self.wavelength
        ref = self.observing.blackbody_reference
        x = HC_K / (wl[None, :] * teff[:, None])
        x0 = HC_K / (ref * teff[:, None])
        bb = (ref / wl[None, :]) ** 5 * np.expm1(x0) / np.expm1(x)
        segs = [(sl.start, sl.stop) for sl in self.grid.segment_slices]
        if self.observing.recipe != "hband":
            cal = np.ones((len(teff), len(wl)))
            for a, b in segs:
                u = np.linspace(-1, 1, b - a)
                ripple = rng.normal(0, 0.02, (len(teff), 2))
                cal[:, a:b] = 1 + ripple[:, :1] * u + ripple[:, 1:] * (u**2 - 1 / 3)
            a_lambda = (np.zeros(len(teff)) if a_h is None else a_h)[:, None] * (
                wl[None, :] / 16500.0) ** -self.observing.extinction_exponent
            scale = F0_5500 * 10.0 ** (-0.4 * mag)
            return scale[:, None] * bb * cal * 10.0 ** (-0.4 * a_lambda)
        thr = np.ones((len(teff), len(wl)))
        levels = itertools.cycle((0.85, 1.0, 0.92))
        for (a, b), level in zip(segs, levels, strict=False):
            u = np.linspace(-1, 1, b - a)
            ripple = rng.normal(0, 0.04, (len(teff), 2))
            thr[:, a:b] = level * (1 - 0.12 * u**2 + ripple[:, :1] * u + ripple[:, 1:] * (u**2 - 1 / 3))
        # gaps and ends: continue smoothly between detectors
        thr[:, :segs[0][0]] = thr[:, segs[0][0]:segs[0][0] + 1]
        for (_, b0), (a1, _) in itertools.pairwise(segs):
            t = np.linspace(0, 1, a1 - b0)
            thr[:, b0:a1] = thr[:, b0 - 1:b0] * (1 - t) + thr[:, a1:a1 + 1] * t
        thr[:, segs[-1][1]:] = thr[:, segs[-1][1] - 1:segs[-1][1]]
        scale = 656.0 * 10.0 ** (-0.4 * (mag - 10.58))
        return scale[:, None] * bb * thr

    def _observe(
        self, clean: np.ndarray, continuum: np.ndarray, snr: np.ndarray, sky_v: np.ndarray,
        rng: np.random.Generator, defects: bool, gap_value: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Noise and defects for M rows: returns flux, error, bitmask (M, P), defect masks."""
        M, P = clean.shape
        det = self._detector
        obs = self.observing
        bad_error = obs.bad_error
        if self._throughput is None:
            med = np.median(clean[:, det], axis=1)
            err = np.sqrt(np.clip(clean, 1e-3 * med[:, None], None) * med[:, None]) / snr[:, None]
        else:  # flux-calibrated: photon noise of the detected counts (flux × throughput) and sky
            counts = clean * self._throughput
            med = np.median(counts[:, det], axis=1)[:, None]
            var = np.clip(counts, 1e-3 * med, None) * med + obs.sky_background * med**2
            err = np.sqrt(var) / self._throughput / snr[:, None]
        err *= np.median(clean[:, det] / err[:, det], axis=1)[:, None] / snr[:, None]
        bitmask = np.zeros((M, P), np.int32)
        masks = {k: np.zeros((M, P), bool) for k in ("gap", "badpix", "cosmic", "sky", "persistence")}
        masks["gap"][:, ~det] = True
        extra = np.zeros((M, P))
        sky_sigma = np.zeros((M, P))
        rows_all = np.arange(M)
        det_idx = np.flatnonzero(det)
        if defects:
            # sky lines, shifted into the star's rest frame
            centre = self._fractional_pixel(self.sky_wavelength[None, :] * (1 + sky_v[:, None] / C_KMS))
            off = np.arange(-3, 4)
            pix = np.rint(centre)[:, :, None].astype(int) + off  # (M, K, 7)
            prof = np.exp(-0.5 * ((pix - centre[:, :, None]) / 1.0) ** 2)
            level = rng.uniform(*obs.sky_level, (M, 1)) * self.sky_strength[None, :]  # in units of err
            amp = level[:, :, None] * prof
            ok = (pix >= 0) & (pix < P) & (prof > 0.05)
            r = np.broadcast_to(rows_all[:, None, None], pix.shape)[ok]
            p = pix[ok]
            np.maximum.at(sky_sigma, (r, p), amp[ok])
            sky_sigma *= err
            masks["sky"] = (sky_sigma > obs.sky_flag_sigma * err) & det
            # cosmic rays: Poisson(1) per spectrum, 1–2 pixels, spike of 10–100 σ
            n_cr = rng.poisson(1.0, M)
            r = np.repeat(rows_all, n_cr)
            p = rng.choice(det_idx, len(r))
            two = rng.random(len(r)) < 0.5
            r, p = np.concatenate([r, r[two]]), np.concatenate([p, np.minimum(p[two] + 1, P - 1)])
            extra[r, p] += rng.uniform(10.0, 100.0, len(r)) * err[r, p]
            masks["cosmic"][r, p] = True
            if obs.persistence:  # APOGEE: excess flux on the first 60 % of the blue detector, ~15 % of stars
                bits = obs.bitmask
                first = self.grid.segment_slices[0]
                a0, b0 = first.start, first.stop
                pers_end = a0 + int(0.6 * (b0 - a0))
                hit = rng.random(M) < 0.15
                lvl = np.where(hit, rng.uniform(0.002, 0.03, M), 0.0)
                extra[:, a0:pers_end] += lvl[:, None] * continuum[:, a0:pers_end]
                masks["persistence"][hit, a0:pers_end] = True
                high, med_, low = (bits.value([f"PERSIST_{x}"]) for x in ("HIGH", "MED", "LOW"))
                pbits = np.where(lvl > 0.02, high, np.where(lvl > 0.008, med_, low))
                bitmask[:, a0:pers_end] |= np.where(hit, pbits, 0)[:, None].astype(np.int32)
        err_tot = np.sqrt(err**2 + sky_sigma**2)
        flux = clean + err_tot * rng.standard_normal((M, P)) + extra
        if defects:
            # sky residual: a systematic over/under-subtraction per line, mostly positive
            flux += sky_sigma * rng.normal(0.5, 0.5, (M, 1))
            bitmask[masks["sky"]] |= obs.bit("sky")
            bitmask[masks["cosmic"]] |= obs.bit("cosmic")
            # bad-pixel clusters (3–8 px): flux interpolated across, huge error
            n_bad = rng.poisson(2.0, M)
            r = np.repeat(rows_all, n_bad)
            length = rng.integers(3, 9, len(r))
            start = rng.choice(det_idx, len(r))
            start = np.clip(start, 1, P - 10)
            stop = start + length
            left, right = flux[r, start - 1], flux[r, stop]
            k = np.repeat(np.arange(len(r)), length)
            pos = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
            t = (pos + 1) / (length[k] + 1)
            pp = start[k] + pos
            flux[r[k], pp] = left[k] + (right[k] - left[k]) * t
            masks["badpix"][r[k], pp] = True
            masks["badpix"] &= det[None, :]
            err_tot[masks["badpix"]] = bad_error
            bitmask[masks["badpix"]] |= obs.bit("badpix")
        flux[:, ~det] = gap_value
        err_tot[:, ~det] = bad_error
        bitmask[:, ~det] |= obs.bit("gap")
        return flux, err_tot, bitmask, masks

    def _fractional_pixel(self, wavelength: np.ndarray) -> np.ndarray:
        """Fractional native-grid pixel index of wavelengths (Å), any shape."""
        if self.grid.log_linear is not None:
            crval, cdelt = self.grid.log_linear
            return (np.log10(wavelength) - crval) / cdelt
        log_w = np.log10(self.wavelength)
        return np.interp(np.log10(wavelength), log_w, np.arange(len(log_w)))
