#!/usr/bin/env bash
# Real-data walk-through: APOGEE DR17 labels -> spectra -> train -> calibrate -> predict -> report.
#
#   bash docs/walkthrough.sh                 # from the repository root, after ./bootstrap.sh
#
# Every step is a plain starlabels command (or one Python call for the calibration); run them one
# by one to follow along. Settings come from the environment:
#   STARLABELS_WALKTHROUGH_DATA  a folder holding the label table and the SAS-layout cache (below);
#                                unset: the real allStarLite is downloaded into $CACHE
#   STARLABELS_WALKTHROUGH_WORK  where datasets, model, catalog and report go (default ./walkthrough)
#   STARLABELS_WALKTHROUGH_N     how many labelled stars to use (default 2000)
#   STARLABELS_WALKTHROUGH_EPOCHS  training epochs (default 30)
#   STARLABELS_WALKTHROUGH_DOWNLOAD=1  really download the spectra (default: --dry-run, print URLs)
#   STARLABELS                   the starlabels program (default .venv/bin/starlabels)
#   PYTHON                       its Python (default .venv/bin/python)
# tests/trust/test_walkthrough.py runs this script on simulated files laid out as the real ones:
# an allStar-like CSV (APOGEE_ID, TELESCOPE, FIELD, TEFF, LOGG, FE_H, ...) and apStar files at
# their SAS paths under cache/ (cache/dr17/apogee/spectro/redux/dr17/stars/<telescope>/<field>/).
#
# Reference files: starlabels bundles none (they are third-party data). What they are and where
# they come from (the names starlabels looks for; starlabels.core.get("apogee") lists them as
# ReferenceFile entries with their source):
#   continuum masks   continuum_mask_dr14_7514.npy / continuum_mask_dr17_7514.npy (ASPCAP's
#                     continuum pixels, as distributed with astroNN), cannon_continuum_pixels_7214.npz
#                     (The Cannon's), payne_fit_mask_7214.npz (The Payne's fit mask)
#   element windows   aspcap_element_windows_dr14_7514.npz (ASPCAP DR14 windows, as in astroNN;
#                     the censored network's "dr14")
#   emulators         payne_kurucz_4label.npz, payne_apogee_dwarfs_5label.npz: The Payne's format
#                     (Ting et al. 2019; github.com/tingyuansen/The_Payne); pass the path to
#                     `simulate/demo --emulator`
# starlabels finds each by file name with starlabels.core.reference.find_reference: an existing
# path as given; then every folder of $STARLABELS_REFERENCE_DIR (os.pathsep-separated) and its
# sub-folders one level down; then the download cache ($STARLABELS_CACHE or ~/.cache/starlabels,
# and its reference/ folder). A missing file is an error listing every place it looked. In a
# training config a relative file path is relative to the config file; a bare name that is not
# there is looked up the same way. E.g. export STARLABELS_REFERENCE_DIR=/path/to/shared/data
# (its apogee/ and emulators/ sub-folders are searched).
# This walk-through needs none of them: the continuum fit below uses the built-in APOGEE grid.
set -euo pipefail

SL=${STARLABELS:-.venv/bin/starlabels}
PY=${PYTHON:-.venv/bin/python}
WORK=${STARLABELS_WALKTHROUGH_WORK:-walkthrough}
N=${STARLABELS_WALKTHROUGH_N:-2000}
EPOCHS=${STARLABELS_WALKTHROUGH_EPOCHS:-30}
DATA=${STARLABELS_WALKTHROUGH_DATA:-}
mkdir -p "$WORK"

# 1. Labels: DR17's allStar (or, for SDSS-V, astraAllStar: `download astraallstar --release dr20
#    --pipeline ASPCAP`, read by ingest the same way). Keep N well-measured stars.
if [ -n "$DATA" ]; then
    CACHE="$DATA/cache"
    ALLSTAR="$DATA/allStar.csv"
else
    CACHE=${STARLABELS_CACHE:-$HOME/.cache/starlabels}
    ALLSTAR=$("$SL" download allstar --release dr17 --lite --cache "$CACHE" | tail -n 1)
fi
"$PY" - "$ALLSTAR" "$WORK/labels.csv" "$N" <<'PYEOF'
import sys

import numpy as np
import pandas as pd

from starlabels.constants import MISSING
from starlabels.io.allstar import read_allstar

table = read_allstar(sys.argv[1], ("TEFF", "LOGG", "FE_H"), columns=("TELESCOPE", "FIELD"))
good = ((table.labels != MISSING).all(axis=1) & (table.aspcapflag == 0)
        & (np.char.strip(table.columns["TELESCOPE"].astype(str)) == "apo25m"))
rows = np.flatnonzero(good)[: int(sys.argv[3])]
out = pd.DataFrame({"APOGEE_ID": table.apogee_id[rows],
                    "TELESCOPE": table.columns["TELESCOPE"].astype(str)[rows],
                    "FIELD": np.char.strip(table.columns["FIELD"].astype(str))[rows]})
for j, name in enumerate(table.label_names):
    out[name] = table.labels[rows, j]
    out[f"{name}_ERR"] = np.where(table.label_errors[rows, j] == MISSING, np.nan, table.label_errors[rows, j])
out.to_csv(sys.argv[2], index=False)
print(f"labels: {len(out)} stars from {sys.argv[1]} -> {sys.argv[2]}")
PYEOF

# 2. Spectra: the apStar file of every star in the table, into the cache under its SAS path.
if [ "${STARLABELS_WALKTHROUGH_DOWNLOAD:-0}" = 1 ]; then
    "$SL" download apstar --release dr17 --from-allstar "$WORK/labels.csv" --cache "$CACHE"
else
    "$SL" download apstar --release dr17 --from-allstar "$WORK/labels.csv" --cache "$CACHE" --dry-run \
        > "$WORK/download_plan.txt"
    head -n 3 "$WORK/download_plan.txt"
    echo "(dry run: $(wc -l < "$WORK/download_plan.txt") files; STARLABELS_WALKTHROUGH_DOWNLOAD=1 fetches them)"
fi
STARS="$CACHE/dr17/apogee/spectro/redux/dr17/stars/apo25m"

# 3. Ingest: spectra found by content, labels matched by APOGEE_ID.
"$SL" ingest "$STARS" -o "$WORK/train.h5" --labels "$WORK/labels.csv" --label-names TEFF,LOGG,FE_H

# 4. Train astroNN's BCNN on continuum-normalised spectra (paths relative to this config file).
cat > "$WORK/train.toml" <<TOML
[data]
files = ["train.h5"]
label_names = ["TEFF", "LOGG", "FE_H"]
[model]
architecture = "bcnn"
spectrum_scaling = "centred"
[preprocess]
kind = "continuum"
[optimiser]
name = "adam"
learning_rate = 0.001
[training]
loss = "robust"
epochs = $EPOCHS
batch_size = 64
[output]
folder = "model"
overwrite = true
TOML
"$SL" train "$WORK/train.toml"

# 5. Calibrate the model's own uncertainty (MC dropout) on its dev split, saved in the folder.
"$PY" - "$WORK" <<'PYEOF'
import sys
from pathlib import Path

import h5py
import numpy as np

import starlabels
from starlabels.inference.calibration import calibrate, report

work = Path(sys.argv[1])
model = starlabels.load_model(work / "model")
dev = np.sort(np.load(work / "model" / "splits.npz")["dev"])
with h5py.File(work / "train.h5") as fh:
    flux, error, labels = fh["flux"][dev], fh["error"][dev], fh["labels"][dev]
print(report(calibrate(work / "model", flux, error, labels, uncertainty="mc_dropout", n_samples=20,
                       save=True)))
PYEOF

# 6. Predict every spectrum (the model's own, now calibrated, uncertainty).
"$SL" predict "$WORK/model" "$STARS" -o "$WORK/catalog.csv" --n-samples 20

# 7. Report: model card, catalog statistics, accuracy against the allStar labels.
"$SL" report "$WORK/model" "$WORK/catalog.csv" --reference "$WORK/labels.csv" -o "$WORK/report"
echo "report: $WORK/report/index.html"
