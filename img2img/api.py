"""The functions behind the commands, for Python users: `train` (a new run or a resumed one),
`distill` (a smaller student of a trained run, `img2img.distill`),
`settings_toml` (what a new run would resolve, as a config file), `load` (a trained run, an
exported file or a reference checkpoint, ready to translate or sample) and `evaluate_run`
(measure a run on held-out data and save what was measured). The command line parses its flags
and calls these, so a script gets exactly the run the command line would."""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from .data.atomic import write_text
from .distill import CORE_MODELS, distill
from .errors import Img2ImgError, Interrupted
from .evaluation.evaluate import evaluate, load_eval_set
from .evaluation.fid import HELP as FID_HELP, inception, protocol
from .inference.translator import (
    DEFAULT_OVERLAP, DEFAULT_TILE, RUNTIMES, LoadedModel, Sampler, TorchRuntime, Translator,
    check_precision, inference_dtype,
)
from .interop import exported, onnx_runtime, reference
from .registry.catalog import Catalog, catalog as installed_catalog
from .runs import checkpoints, folders as runs
from .training import configfile
from .training.configfile import ConfigFileError
from .training.devices import resolve_device
from .training.distributed import from_environment
from .training.settings import TrainConfig, environment_defaults, resolve_settings
from .training.trainer import Trainer


def train(model: str, *, preset: str | None = None, config: str | Path | None = None,
          resume: str | Path | None = None, catalog: Catalog | None = None,
          progress: bool | None = None, **settings: Any) -> Path:
    """Train `model` (a name from `img2img.list_models()`) and return the run folder.

    `settings` are the model's options and the training settings by field name (`data="pairs/"`,
    `max_steps=500`, `ngf=32`; see `img2img train MODEL --help`). `config` is a TOML (or YAML)
    file of settings, or a past run's config.json (its preset applies when `preset` is None).
    Precedence: field default < IMG2IMG_RUNS_DIR / IMG2IMG_DEVICE < model default < `preset` <
    `config` < `settings`. With `resume` (a run folder, a checkpoint or "latest"), the run
    continues exactly where it stopped; `settings` may then change only training settings. With
    `init_from=RUN` a new run starts from that run's weights, its model options and channels
    taking the place of the preset's. `progress` shows a progress bar (default: when stderr is
    a terminal)."""
    catalog = catalog if catalog is not None else installed_catalog()
    model_cls = model_class(catalog, model)
    owner = catalog.owners.get(("model", model))
    plugin = {"name": owner.name, "distribution": owner.distribution,
              "version": owner.version} if owner else {}
    if resume is not None:
        if config is not None:
            raise ConfigFileError("--config: a resumed run keeps its own settings; give "
                                  "--resume alone (typed training flags still apply)")
        if preset is not None:
            raise Img2ImgError("--preset: a resumed run keeps the preset it was trained with")
        if settings.get("init_from") is not None:
            raise Img2ImgError("--init-from starts a new run from another run's weights; "
                               "--resume continues a run: use one of them")
        where = {k: v for k, v in environment_defaults().items() if k == "runs_dir"}
        trainer = Trainer.resume(model_cls, str(resume), plugin=plugin, progress=progress,
                                 loggers=catalog.loggers, **{**where, **settings})
    else:
        preset, options, resolved = _resolve(catalog, model_cls, preset, config, settings)
        trainer = Trainer(model_cls, options, resolved, plugin=plugin, preset=preset,
                          progress=progress, loggers=catalog.loggers)
        if from_environment().is_main:
            print(f"Run folder: {trainer.run_dir}", file=sys.stderr)
    run_dir = trainer.fit()
    if getattr(trainer, "interrupted", False):
        stopped_by = signal.Signals(trainer.stop_signal)
        raise Interrupted(f"training stopped by {stopped_by.name}: interrupted at step "
                          f"{trainer.state.step}; the checkpoint is saved: continue with: "
                          f"img2img train {model} --resume {run_dir}",
                          exit_code=128 + stopped_by.value)
    return run_dir


def settings_toml(model: str, *, preset: str | None = None, config: str | Path | None = None,
                  catalog: Catalog | None = None, **settings: Any) -> str:
    """Every setting `train` would resolve for a new run with these arguments, as a TOML file
    that `config=` reads back (what `img2img train MODEL --print-config` writes); trains
    nothing and writes no run folder."""
    catalog = catalog if catalog is not None else installed_catalog()
    model_cls = model_class(catalog, model)
    preset, options, resolved = _resolve(catalog, model_cls, preset, config, settings)
    return configfile.to_toml(model, preset, options, resolved)


def model_class(catalog: Catalog, name: str) -> Any:
    """The model called `name`: one the core provides (`distill`), else a plugin's."""
    return CORE_MODELS[name] if name in CORE_MODELS else catalog.model(name)


def _resolve(catalog: Catalog, model_cls: Any, preset: str | None, config: str | Path | None,
             settings: dict[str, Any]) -> tuple[str | None, Any, TrainConfig]:
    """(preset name, model options, TrainConfig) of a new run, in `train`'s precedence."""
    loaded = configfile.read(config, model_cls) if config is not None else None
    file_settings = dict(loaded.settings) if loaded is not None else {}
    from_file = preset is None and loaded is not None and loaded.preset is not None
    preset = loaded.preset if from_file else preset
    try:
        found = catalog.preset(model_cls.name, preset) if preset is not None else None
    except Img2ImgError as exc:
        if from_file:
            raise ConfigFileError(f"{loaded.path}: preset: {exc}") from None
        raise
    given = {**file_settings, **settings}
    if given.get("init_from") is not None:  # its options, so its weights fit the networks
        runs_dir = given.get("runs_dir", environment_defaults().get("runs_dir",
                                                                    TrainConfig.runs_dir))
        inherited = checkpoints.initial_settings(model_cls, given["init_from"], Path(runs_dir))
        file_settings = {**inherited, **file_settings}
    options, resolved = resolve_settings(model_cls, found, file_settings, **settings)
    return preset, options, resolved


def _held_out(model: Any, data: Any, a: Any, b: Any, limit: int | None
              ) -> tuple[dict[str, Any], list[str]]:
    """The evaluation set and the folders it was read from (said to the user and recorded)."""
    data, a, b = (None if v is None else Path(v) for v in (data, a, b))
    folders: list[Path] = []  # open_dataset chooses the split; it says which folders it read
    eval_set = load_eval_set(model, data, limit, a=a, b=b, folders=folders)
    if any(p.name in ("trainA", "trainB") for p in folders):
        print("warning: scoring the training folders (no testA/ and testB/ in the data)",
              file=sys.stderr)
    return eval_set, [str(p) for p in folders]


def evaluate_run(run: str | Path | LoadedModel, data: str | Path | None = None, *,
                 a: str | Path | None = None, b: str | Path | None = None,
                 runs_dir: str | Path = "runs", device: str = "auto",
                 inception_weights: str | Path | None = None, limit: int | None = None,
                 batch_size: int = 8, out: str | Path | None = None,
                 catalog: Catalog | None = None) -> tuple[dict[str, Any], Path]:
    """Measure a trained run (a run folder, checkpoint, "latest", or what `img2img.load` returned) on
    held-out `data` in its training layout (its test split when it has one: `DATA/test/`,
    `testA/` + `testB/`; or unpaired `a` and `b` folders), write the record to `out` (default:
    RUN/eval.json)
    and return (record, path). The record holds the checkpoint, the data, the item count and
    the metrics (PSNR/SSIM/L1 for paired data, SWD for unpaired and labelled data, FID/KID with
    `inception_weights`, the FID Inception weights file, and then `fid_protocol`: the library,
    weights, resize, feature layer and image counts behind them)."""
    loaded = run if isinstance(run, LoadedModel) else load(run, device=device, runs_dir=runs_dir,
                                                          catalog=catalog)
    features = inception(inception_weights, loaded.device) if inception_weights else None
    eval_set, scored = _held_out(loaded.model, data, a, b, limit)
    print(f"Evaluating {loaded.checkpoint} on {', '.join(scored)}", file=sys.stderr)
    counted: dict[str, int] = {}
    results = evaluate(loaded.model, eval_set, batch_size=batch_size, features=features,
                       counted=counted)
    if features is None:
        print(f"(no FID/KID: {FID_HELP})", file=sys.stderr)
    target = Path(out) if out is not None else \
        checkpoints.run_dir_of(loaded.checkpoint) / runs.EVAL
    record = {"checkpoint": str(loaded.checkpoint), "data": scored,
              "items": len(next(iter(eval_set.values()))), **results}
    if features is not None:  # what the FID/KID numbers mean, to compare them with papers'
        record["fid_protocol"] = protocol(features, counted["generated"], counted["reference"],
                                          scored)
    write_text(target, json.dumps(record, indent=2) + "\n")
    return record, target


def load(ref: str | Path = "latest", *, device: str = "auto", runs_dir: str | Path = "runs",
         catalog: Catalog | None = None, tile: int = DEFAULT_TILE,
         overlap: int = DEFAULT_OVERLAP, runtime: str | None = None,
         precision: str = "fp32") -> Translator | Sampler:
    """A trained model from a run folder (its latest checkpoint; `RUN:best` for the best
    evaluated one), a checkpoint file, or "latest" (the newest run under `runs_dir`): a
    `Translator` for a model that translates, a `Sampler` for one that generates from noise.
    `runtime` runs the generator: "torch" (the default) or "onnxruntime" (the onnx extra).
    `precision` (torch runtime): "fp32" (the default, exact), "bf16" / "fp16" autocast, or
    "auto" (the reduced type the device computes natively: bf16 on CPUs with AVX-512 BF16 or AMX
    and on recent GPUs, fp16 on older GPUs, else fp32); reduced precision changes the output a
    little (benchmarks/README.md gives PSNR figures against fp32).
    A file `img2img export` wrote (.onnx, or TorchScript .pt) loads as a `Translator` too, and
    so does a reference implementation's .pth generator (imported in memory)."""
    if runtime not in (None, *RUNTIMES):
        raise Img2ImgError(f"unknown runtime '{runtime}'; choose one of: {', '.join(RUNTIMES)}")
    check_precision(precision)  # before anything loads
    if precision != "fp32" and (runtime == "onnxruntime" or exported.is_exported(ref)):
        raise Img2ImgError(f"--precision {precision} applies to the torch runtime; ONNX Runtime "
                           "and exported files compute in the precision they were exported in "
                           "(fp32)")
    if exported.is_exported(ref):
        return exported.load_exported(Path(ref), device=device, runtime=runtime,
                                      catalog=catalog, tile=tile, overlap=overlap)
    if reference.is_reference_file(ref):  # the reference implementation's, imported in memory
        return _load_reference(Path(ref), device, runtime, catalog, precision, tile=tile,
                               overlap=overlap)
    weights = checkpoints.resolve_checkpoint(str(ref), Path(runs_dir))
    meta = checkpoints.read_metadata(weights)
    catalog = catalog if catalog is not None else installed_catalog()
    name = meta.get("model", "?")
    if name not in catalog.models and name not in CORE_MODELS:
        raise Img2ImgError(f"{weights} needs the '{name}' model, which no installed plugin "
                           f"provides (plugin: {meta.get('plugin', {}).get('distribution', '?')})")
    torch_device = resolve_device(device)
    on_ort = runtime == "onnxruntime"
    # ONNX Runtime is fed from the CPU (numpy) and exports from there; sessions pick the device
    model_device = torch.device("cpu") if on_ort else torch_device
    model = checkpoints.model_from_checkpoint(model_class(catalog, name), weights,
                                              model_device)
    if not model.directions:
        if on_ort:
            raise Img2ImgError(f"model '{name}' generates images from noise; the onnxruntime "
                               "runtime runs generators that translate images")
        return Sampler(model, weights, torch_device, preset=meta.get("preset"))
    preset = catalog.presets.get((name, meta.get("preset") or ""))
    engine = (onnx_runtime.OnnxRuntime(model, torch_device) if on_ort
              else TorchRuntime(model, inference_dtype(precision, torch_device)))
    return Translator(model, weights, model_device, tile=tile, overlap=overlap,
                      pipeline=getattr(preset, "pipeline", None), preset=meta.get("preset"),
                      runtime=engine)


def _load_reference(path: Path, device: str, runtime: str | None, catalog: Catalog | None,
                    precision: str, **tiling: int) -> Translator:
    """A reference `.pth` generator as a `Translator`, without writing a run."""
    if runtime not in (None, "torch"):
        raise Img2ImgError(f"{path}: a reference file runs with the torch runtime; for "
                           f"'{runtime}', `img2img import` it and export the run")
    torch_device = resolve_device(device)
    model = reference.load_reference(path, catalog).to(torch_device)
    return Translator(model, path, torch_device, **tiling,
                      runtime=TorchRuntime(model, inference_dtype(precision, torch_device)))
