"""`img2img convert`, `img2img eval` and `img2img eval-video`: the commands that use a trained
run."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import click
import torch
from tqdm import tqdm

from .. import api
from ..errors import Img2ImgError
from ..data.atomic import write_text
from ..inference.convert import Variants, convert as run_convert
from ..inference.stabilize import STABILIZERS
from ..inference.translator import DEFAULT_TILE, INFERENCE_PRECISIONS, NO_NOISE, RUNTIMES
from ..inference.video import Encoding, is_video, measure_video
from ..registry.catalog import Catalog
from ..training import distributed
from ..training.devices import resolve_device
from .errors import Failure
from .flags import TYPED, SectionedCommand
from .options import chosen_run, open_run, output_option, run_options


def _how_to_translate(command: Callable[..., Any]) -> Callable[..., Any]:
    """--direction, --size and --style: how convert and eval-video translate each image."""
    for option in reversed((
            click.option("--direction", default=None,
                         help="a_to_b or b_to_a for two-way models (default: the model's first)"),
            click.option("--size", type=click.IntRange(min=8), default=None,
                         help="translate at this short side, then resize back (default: as is)"),
            click.option("--style", "--label", "label", default=None, metavar="NAME",
                         help="runs trained on style or class sub-folders (e.g. several "
                              "writers): which one to produce (default: the first)"))):
        command = option(command)
    return command


def convert_command(catalog: Catalog) -> click.Command:
    @click.command("convert", cls=SectionedCommand, context_settings={"show_default": True})
    @click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
    @output_option(help="output folder (default: converted/), or the output file for one input")
    @run_options("translate")
    @_how_to_translate
    @click.option("--tile", type=click.IntRange(min=32), default=DEFAULT_TILE,
                  help="images larger than this are translated in overlapping tiles, so "
                       "memory stays bounded")
    @click.option("--batch-size", type=click.IntRange(min=1), default=None,
                  help="same-sized images translated together (default: 4 on a GPU, 1 on a "
                       "CPU, where larger batches only add cache misses)")
    @click.option("--runtime", type=click.Choice(RUNTIMES), default=None,
                  help="what runs the generator: torch, or onnxruntime (the onnx extra; the "
                       "generator is exported on first use)  [default: torch; for an exported "
                       "file, its own]")
    @click.option("--precision", type=click.Choice(INFERENCE_PRECISIONS), default="fp32",
                  help="torch runtime: fp32 (exact), bf16 or fp16 (CUDA) autocast, or auto "
                       "(bf16 where the CPU or GPU computes it natively: about 2x faster for "
                       "ResNet generators on CPUs with AVX-512 BF16, 44 dB PSNR from fp32; "
                       "fp16 on older GPUs; else fp32)")
    @click.option("--variants", type=click.IntRange(min=1), default=None, metavar="N",
                  help="runs trained with --noise-dim: N outputs per input, from seeds --seed, "
                       "--seed + 1, ..., written as NAME_v0, NAME_v1, ... (the same N for the "
                       "same seed)")
    @click.option("--seed", type=int, default=None,
                  help="runs trained with --noise-dim: which output (each seed gives its own; "
                       "without --seed, zero noise gives the output closest to what training "
                       "fitted); with --variants, the first variant's seed (default 0)")
    @click.option("--interpolate", is_flag=True,
                  help="with --variants N: N steps from seed --seed's noise to seed --seed + 1's "
                       "(spherical interpolation), instead of N separate seeds")
    @click.option("--sheet", is_flag=True,
                  help="with --variants: one contact sheet per input (its variants side by side, "
                       "under the input's name) instead of one file each")
    @click.option("--stabilize", type=click.Choice(STABILIZERS), default="none",
                  help="videos: 'flow' blends each frame with the previous output frame moved "
                       "along the input's optical flow (occluded pixels excepted), so static "
                       "parts stop flickering and motion stays sharp")
    @click.option("--codec", default=None, metavar="ENCODER",
                  help="videos: the FFmpeg video encoder (libx264, libx265, libvpx-vp9, mpeg4, "
                       "ffv1, ...)  [default: the container's own: H.264 for .mp4/.mov/.mkv, "
                       "VP9 for .webm]")
    @click.option("--crf", type=click.IntRange(min=0), default=None,
                  help="videos: quality, lower is better (x264/x265/VP9 constant rate factor; "
                       "a fixed quantiser for other encoders)  [default: 18 for x264, near "
                       "lossless]")
    @click.option("--pixel-format", default=None, metavar="FORMAT",
                  help="videos: the encoded pixel format (yuv420p, yuv444p, ...)  [default: "
                       "yuv420p, which every player plays; yuv444p for odd sizes]")
    @click.pass_context
    def convert(ctx: click.Context, inputs: tuple[str, ...], out: Path | None, model_ref: str,
                runs_dir: Path, direction: str | None, size: int | None, label: str | None,
                tile: int, batch_size: int | None, runtime: str | None, precision: str,
                variants: int | None, seed: int | None, interpolate: bool, sheet: bool,
                device: str, stabilize: str, codec: str | None, crf: int | None,
                pixel_format: str | None, **pipeline_flags: Any) -> None:
        """Translate images and videos (files, folders, globs) with a trained model.

        Each output keeps its input's name, size and alpha channel; the format follows the
        extension. A video keeps its frame count, timestamps, frame rate, size, rotation and
        duration, and its audio and subtitle streams unchanged. Inputs are never overwritten. A
        run trained with a noise input (--noise-dim) gives a different output per --seed, and
        several with --variants.
        """
        if (interpolate or sheet) and variants is None:
            raise click.UsageError(f"--{'interpolate' if interpolate else 'sheet'} needs "
                                   "--variants N")
        if interpolate and variants < 2:
            raise click.UsageError("--interpolate walks between two seeds: give --variants 2 "
                                   "or more")
        processes = distributed.from_environment()
        if processes.distributed:  # torchrun: one device per local rank, a share of the files
            device = str(distributed.local_device(processes, resolve_device(device)))
            distributed.start(processes, torch.device("cpu"), timeout_s=600)
        translator = open_run(model_ref, runs_dir, device, "translate", tile=tile,
                              runtime=runtime, precision=precision)
        if processes.is_main:
            engine = translator.runtime.name
            dtype = getattr(translator.runtime, "dtype", None)
            click.echo(f"Using {translator.checkpoint} ({translator.name}"
                       f"{'' if engine == 'torch' else ', runtime ' + engine}"
                       f"{'' if dtype is None else ', ' + str(dtype).replace('torch.', '')})",
                       err=True)
        if (variants is not None or seed is not None) and not translator.noise_dim:
            flag = "--variants" if variants is not None else "--seed"
            raise click.UsageError(f"{flag}: {translator.checkpoint} ({translator.name}) "
                                   f"{NO_NOISE}")
        how_many = None if variants is None and seed is None else \
            Variants(variants, seed or 0, interpolate, sheet)
        pipeline_options = _pipeline_options(ctx, translator, pipeline_flags)
        if batch_size is None:
            batch_size = 1 if translator.device.type == "cpu" else 4
        with tqdm(total=None, unit="image", disable=not sys.stderr.isatty()) as bar:
            outcome = run_convert(translator, list(inputs), out, direction=direction, size=size,
                                  label=label, batch_size=batch_size, progress=bar,
                                  pipeline_options=pipeline_options, processes=processes,
                                  variants=how_many, stabilize=stabilize,
                                  encoding=Encoding(codec, crf, pixel_format),
                                  video_progress=sys.stderr.isatty())
        _report(outcome, processes)

    # Presets that carry a convert pipeline add their own flags (e.g. --faces), listed in
    # --help under a heading naming the presets they serve.
    served: dict[str, list[str]] = {}
    for (model, name), preset in sorted(catalog.presets.items()):
        for option in getattr(preset.pipeline, "convert_options", ()):
            served.setdefault(option.name, []).append(f"{model}/{name}")
            if option.name not in {p.name for p in convert.params}:
                convert.params.append(option)
    for param in convert.params:
        if param.name in served:
            param.help_section = f"Options for runs trained with preset {', '.join(served[param.name])}"
        elif param.name in ("stabilize", "codec", "crf", "pixel_format"):
            param.help_section = "Video options"
        elif isinstance(param, click.Option) and param.name != "help":
            param.help_section = "Options"
    return convert


def _report(outcome: Any, processes: distributed.Processes) -> None:
    """Each process lists its own outputs and failures; rank 0 sums up for all of them. A single
    input that fails is one line: its error."""
    # Messages that already name the file ("cannot read image PATH: ...") name it once.
    shown = [message if str(src) in message else f"{src}: {message}"
             for src, message in outcome.failed]
    alone = not processes.distributed and outcome.inputs <= 1 and len(shown) == 1
    for line in shown if not alone else ():
        click.echo(f"error: {line}", err=True)
    converted, failed = len(outcome.converted), len(outcome.failed)
    if processes.distributed:
        converted, failed = distributed.total(converted), distributed.total(failed)
        distributed.stop()
    if converted and processes.is_main:
        folders = sorted({str(dst.parent) for _, dst in outcome.converted})
        videos = sum(is_video(src) for src, _ in outcome.converted)
        what = "image(s)" if not videos else "video(s)" if videos == len(outcome.converted) \
            else "file(s)"
        click.echo(f"Converted {converted} {what} into {', '.join(folders)}", err=True)
    for _, dst in outcome.converted:
        click.echo(str(dst))
    if alone:
        raise Failure(shown[0], 1)
    if failed:
        if not processes.is_main:
            raise click.exceptions.Exit(1)
        raise Failure(f"{failed} input(s) failed", 1)


def _pipeline_options(ctx: click.Context, translator: Any, flags: dict[str, Any]
                      ) -> dict[str, Any] | None:
    """The flags the run's pipeline takes; a typed flag it does not take is an error."""
    pipeline = translator.pipeline
    accepted = {o.name for o in getattr(pipeline, "convert_options", ())}
    typed = {k for k in flags if ctx.get_parameter_source(k) in TYPED}
    foreign = typed - accepted
    if foreign:
        names = ", ".join("--" + k.replace("_", "-") for k in sorted(foreign))
        preset = f", preset {translator.preset}" if translator.preset else ", no preset"
        raise Img2ImgError(f"{names} does not apply to this run ({translator.name}{preset})")
    if pipeline is None:
        return None
    return {k: v for k, v in flags.items() if k in accepted}


# -- eval ---------------------------------------------------------------------------------------
def eval_command(catalog: Catalog) -> click.Command:
    @click.command("eval", context_settings={"show_default": True})
    @click.argument("run", default=None, required=False, metavar="[RUN]")
    @run_options("any")
    @click.option("--data", type=click.Path(path_type=Path), default=None,
                  help="held-out data in the layout the model trains on; its test split when "
                       "it has one (DATA/test/, or testA/ and testB/)")
    @click.option("--a", type=click.Path(path_type=Path), default=None,
                  help="unpaired models: held-out domain A images (instead of --data)")
    @click.option("--b", type=click.Path(path_type=Path), default=None,
                  help="unpaired models: held-out domain B images (instead of --data)")
    @click.option("--inception-weights", type=click.Path(path_type=Path), default=None,
                  help="the FID Inception-v3 weights file (torch-fidelity's "
                       "weights-inception-2015-12-05-6726825d.pth), for FID and KID as papers "
                       "report them; needs pip install 'img2img[fid]'")
    @click.option("--limit", type=click.IntRange(min=2), default=None,
                  help="evaluate at most this many items")
    @click.option("--batch-size", type=click.IntRange(min=1), default=8,
                  help="held-out images translated at once (more: faster, more memory)")
    @output_option(help="where to write the measurements as JSON (default: RUN/eval.json)")
    def evaluate_run(run: str | None, model_ref: str, runs_dir: Path, device: str,
                     data: Path | None, a: Path | None, b: Path | None, inception_weights: Path | None, limit: int | None, batch_size: int,
                     out: Path | None) -> None:
        """Measure a trained run on held-out data: PSNR/SSIM/L1 for paired data, sliced
        Wasserstein distance for unpaired and labelled data, FID/KID with --inception-weights.

        The run is --model (RUN may also be given first, as in `img2img eval RUN --data DIR`).
        """
        loaded = open_run(chosen_run(run, model_ref), runs_dir, device, "any")
        record, target = api.evaluate_run(loaded, data, a=a, b=b,
                                          inception_weights=inception_weights,
                                          limit=limit, batch_size=batch_size, out=out)
        results = {k: v for k, v in record.items() if k not in ("checkpoint", "data", "items")
                   and isinstance(v, (int, float))}  # fid_protocol is in the file
        width = max(len(k) for k in results)
        for key, value in results.items():
            click.echo(f"{key:<{width}}  {value:.4f}")
        click.echo(f"Wrote {target}", err=True)
    return evaluate_run


# -- eval-video -----------------------------------------------------------------------------------
def eval_video_command(catalog: Catalog) -> click.Command:
    @click.command("eval-video", context_settings={"show_default": True})
    @click.argument("args", nargs=-1, required=True, metavar="[RUN] CLIP")
    @run_options("translate")
    @_how_to_translate
    @click.option("--limit", type=click.IntRange(min=2), default=None,
                  help="measure the first this many frames only")
    @click.option("--batch-size", type=click.IntRange(min=1), default=None,
                  help="frames translated together (default: 8 on a GPU, 1 on a CPU)")
    @click.option("--json", "as_json", is_flag=True,
                  help="print the measurements as one JSON object")
    @output_option(help="also write the measurements to this JSON file")
    def evaluate_video(args: tuple[str, ...], model_ref: str, runs_dir: Path, device: str,
                       direction: str | None, size: int | None, label: str | None,
                       limit: int | None, batch_size: int | None, as_json: bool,
                       out: Path | None) -> None:
        """Measure how much a run flickers on a clip: the warping error E_warp (Lai et al.,
        ECCV 2018) of its frame-by-frame output, of the output with --stabilize flow, and of the
        input clip itself (the floor).

        E_warp is the mean squared difference (RGB in [0, 1], summed over channels) between
        each output frame and the previous output frame warped onto it with the input frames'
        optical flow, over the pixels the flow tracks; lower is steadier. The run is --model, or
        given first: `img2img eval-video RUN clip.mp4`. Nothing is written unless -o is given.
        """
        if len(args) > 2:
            raise click.UsageError(f"expected [RUN] CLIP, got {len(args)} arguments")
        run, clip = (None, args[0]) if len(args) == 1 else args
        if not Path(clip).is_file():
            raise click.UsageError(f"no such clip: {clip}")
        translator = open_run(chosen_run(run, model_ref), runs_dir, device, "translate")
        click.echo(f"Using {translator.checkpoint} ({translator.name})", err=True)
        options = None
        if translator.pipeline is not None:  # its convert flags at their defaults
            options = {}
        with tqdm(total=limit, unit="frame", disable=not sys.stderr.isatty()) as bar:
            record = measure_video(translator, clip, direction=direction, size=size,
                                   label=label, batch_size=batch_size, limit=limit,
                                   pipeline_options=options, progress=bar)
        text = json.dumps(record, indent=2)
        if out is not None:
            write_text(out, text + "\n")
            click.echo(f"Wrote {out}", err=True)
        if as_json:
            click.echo(text)
            return
        e_warp = record["e_warp"]
        click.echo(f"E_warp x1e3 over {record['frames']} frames (lower is steadier)")
        click.echo(f"  input clip (the floor)  {1e3 * e_warp['input']:9.3f}")
        click.echo(f"  frame by frame          {1e3 * e_warp['frame_by_frame']:9.3f}")
        click.echo(f"  --stabilize flow        {1e3 * e_warp['stabilized']:9.3f}  "
                   f"({100 * record['stabilized_change']:+.0f}%)")
        psnr = record["stabilized_psnr_db"]
        click.echo(f"stabilised vs frame-by-frame PSNR: min {psnr['min']:.1f} dB, "
                   f"mean {psnr['mean']:.1f} dB")
        ms = record["ms_per_frame"]
        click.echo(f"ms per frame: translate {ms['translate']:.1f}, stabilize "
                   f"{ms['stabilize']:.1f}")
    return evaluate_video
