"""``starlabels import-astronn``: an astroNN model folder (ApogeeBCNN, ApogeeBCNNCensored) as a
starlabels model folder."""

from __future__ import annotations

import click


@click.command(
    "import-astronn",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n"
    "  starlabels import-astronn astroNN_0617_run001 -o models/astronn_censored\n"
    "  starlabels import-astronn my_bcnn -o models/bcnn --continuum-mask dr17_contmask.npy\n"
    "  starlabels predict models/bcnn spectra/ -o catalog.fits --uncertainty mc_dropout\n\n"
    "astroNN's JSON and Keras HDF5 weights are read with h5py; TensorFlow is not needed. The "
    "continuum mask and the censored network's ASPCAP DR14 element windows are not in astroNN's "
    "folder: by default they come from an installed astroNN package (dr17_contmask.npy, "
    "aspcap_l31c_masks.npy). Without a continuum mask the model takes only preprocessed input. "
    "Nothing is written unless the whole model converts.",
)
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="The starlabels model folder to write (written atomically).")
@click.option("--continuum-mask", type=click.Path(exists=True, dir_okay=False), default=None,
              help="(7514,) bool .npy/.npz continuum mask astroNN's apogee_continuum used.")
@click.option("--continuum-dr", type=int, default=17, show_default=True,
              help="Which astroNN dr<N>_contmask.npy to take from an installed astroNN.")
@click.option("--element-windows", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Censored network: astroNN's aspcap_l31c_masks.npy or an .npz with windows/elements.")
@click.option("--label-names", default=None,
              help="Comma-separated names for the outputs [default: from astroNN's targetname].")
@click.option("--overwrite", is_flag=True, help="Replace an existing starlabels model folder.")
def command(folder: str, output: str, continuum_mask: str | None, continuum_dr: int,
            element_windows: str | None, label_names: str | None, overwrite: bool) -> None:
    """Convert the astroNN model FOLDER into a starlabels model folder OUTPUT."""
    from starlabels.errors import StarlabelsError
    from starlabels.models.astronn_import import from_astronn

    names = None if label_names is None else [n.strip() for n in label_names.split(",") if n.strip()]
    try:
        model = from_astronn(folder, continuum_mask=continuum_mask, continuum_dr=continuum_dr,
                             element_windows=element_windows, label_names=names)
        path = model.save(output, overwrite=overwrite)
    except (StarlabelsError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from exc
    info = model.training["imported_from"]
    click.echo(f"{info['astronn_class']} from {folder} -> {path}: {model.n_labels} labels "
               f"({', '.join(model.label_names)}), dropout {model.network.dropout}")
    click.echo("preprocessing: " + ("astroNN apogee_continuum, mask " + str(info["continuum_mask"])
                                    if model.preprocessing is not None else "none (preprocessed input only)"))
