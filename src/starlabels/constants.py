"""Project-wide constants."""

#: Value that marks a missing label or label error (as in APOGEE's allStar and astroNN).
MISSING = -9999.0

#: Spectrum-scaling modes of a network's input (``starlabels.data.normalization.SpectrumScaler``,
#: config ``[model] spectrum_scaling``): per-pixel training mean subtracted, also divided by the
#: per-pixel training std, or raw.
SPECTRUM_MODES = ("centred", "standardised", "none")
#: Older spellings still read from configs and model folders (and written back as the new value).
SPECTRUM_MODE_ALIASES = {"centered": "centred"}
