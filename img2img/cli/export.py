"""`img2img export`: write a run's generator as an ONNX or TorchScript file and print the contract
recorded in it (what goes in, what comes out, the sizes it takes)."""
from __future__ import annotations

from pathlib import Path

import click

from ..interop.export import FORMATS, Int8, export_model
from ..registry.catalog import Catalog
from ..runs import folders as runs
from .options import chosen_run, open_run, output_option, run_options


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
    @click.option("--int8", is_flag=True,
                  help="ONNX only: quantize to int8 (static, per-channel, calibrated on a few "
                       "input images); refused if its output strays more than --min-psnr "
                       "from fp32")
    @click.option("--calibration", type=click.Path(path_type=Path), default=None,
                  metavar="DIR", help="with --int8: a folder of input images (the domain the "
                                      "model translates from)  [default: the run's own "
                                      "training images of that side]")
    @click.option("--calibration-images", type=click.IntRange(min=1), default=Int8.count,
                  help="with --int8: images calibrated on; up to "
                       f"{Int8.held_out} more check the result")
    @click.option("--min-psnr", type=click.FloatRange(min=0), default=Int8.min_psnr,
                  help="with --int8: least PSNR (dB) of the int8 output from the fp32 output")
    def export(run: str | None, model_ref: str, runs_dir: Path, device: str, out: Path,
               fmt: str | None, direction: str | None, label: str | None, int8: bool,
               calibration: Path | None, calibration_images: int, min_psnr: float) -> None:
        """Write a trained run's generator as an ONNX (.onnx) or TorchScript (.pt) file.

        The graph takes any batch size, height and width (the multiple it needs is printed and
        stored in the file's metadata), floats in [-1, 1], NCHW. Convert with it directly
        (`img2img convert x.png --model model.onnx`). The run is --model (RUN may also be given
        first, as in `img2img export RUN -o model.onnx`).

        --int8 writes a quantized ONNX graph (ONNX Runtime's static quantization, calibrated
        on a few input images: the run's own training images, or --calibration DIR) and
        checks it against the fp32 graph on others. On a CPU with int8 dot products (AVX-512
        VNNI, AVX-VNNI) a U-Net-256 ran 2.4x faster at 46 dB PSNR from fp32; a network
        that loses more than --min-psnr is refused and nothing is written.

        Needs the onnx extra for ONNX: pip install 'img2img[onnx]'.
        """
        if calibration is not None and not int8:
            raise click.UsageError("--calibration DIR is for --int8, which calibrates on its "
                                   "images")
        ref = chosen_run(run, model_ref)
        # "latest" means the newest run that translates; a named cgan run is refused by name
        loaded = open_run(ref, runs_dir, device, "translate" if ref == runs.LATEST else "any")
        quantize = Int8(calibration, calibration_images, Int8.held_out, min_psnr) if int8 \
            else None
        if quantize:
            source = calibration or "the run's training data"
            click.echo(f"Quantizing to int8: calibrating on up to {calibration_images} images "
                       f"of {source}, checking on up to {Int8.held_out} others", err=True)
        contract = export_model(loaded, out, fmt, direction=direction, label=label,
                                int8=quantize)
        for line in contract.describe():
            click.echo(line)
        click.echo(f"Wrote {out}", err=True)

    return export
