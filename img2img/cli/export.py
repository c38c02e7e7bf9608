"""`img2img export`: write a run's generator as an ONNX or TorchScript file and print the contract
recorded in it (what goes in, what comes out, the sizes it takes)."""
from __future__ import annotations

from pathlib import Path

import click

from .. import runs
from ..catalog import Catalog
from ..commands import chosen_run, open_run, output_option, run_options
from ..interop.export import FORMATS, export_model


def export_command(catalog: Catalog) -> click.Command:
    @click.command("export", context_settings={"show_default": True})
    @click.argument("run", default=None, required=False, metavar="[RUN]")
    @run_options("translate")
    @output_option(required=True, help="the file to write: model.onnx (ONNX) or model.pt "
                                       "(TorchScript)")
    @click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default=None,
                  help="onnx or torchscript  [default: from the -o suffix]")
    @click.option("--direction", default=None,
                  help="a_to_b or b_to_a for two-way models (default: the model's first)")
    @click.option("--style", "--label", "label", default=None, metavar="NAME",
                  help="runs trained on style or class sub-folders: the one baked into the "
                       "graph (default: the first)")
    def export(run: str | None, model_ref: str, runs_dir: Path, device: str, out: Path,
               fmt: str | None, direction: str | None, label: str | None) -> None:
        """Write a trained run's generator as an ONNX (.onnx) or TorchScript (.pt) file.

        The graph takes any batch size, height and width (the multiple it needs is printed and
        stored in the file's metadata), floats in [-1, 1], NCHW. Convert with it directly
        (`img2img convert x.png --model model.onnx`). The run is --model (RUN may also be given
        first, as in `img2img export RUN -o model.onnx`).

        Needs the onnx extra for ONNX: pip install 'img2img[onnx]'.
        """
        ref = chosen_run(run, model_ref)
        # "latest" means the newest run that translates; a named cgan run is refused by name
        loaded = open_run(ref, runs_dir, device, "translate" if ref == runs.LATEST else "any")
        contract = export_model(loaded, out, fmt, direction=direction, label=label)
        for line in contract.describe():
            click.echo(line)
        click.echo(f"Wrote {out}", err=True)

    return export
