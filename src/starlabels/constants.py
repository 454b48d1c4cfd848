"""Project-wide constants."""

#: Value that marks a missing label or label error (as in APOGEE's allStar and astroNN).
MISSING = -9999.0
