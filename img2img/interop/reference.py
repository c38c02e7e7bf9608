"""Checkpoints of the pix2pix/CycleGAN reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix,
`latest_net_G.pth` state dicts) as img2img models and runs. The architecture is read from the state
dict itself (ResNet blocks or U-Net depth, widths, channels, batch or instance norm, ResNet
dropout), the weights are mapped onto img2img's networks by structure with every shape checked,
and `import_run` writes the result as an ordinary run; `load_reference` makes one in memory."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, Img2ImgError
from ..model import ImageSpec, Model
from ..networks import GENERATORS, NetworkOptions
from ..networks.options import BATCH_STATS
from ..registry.catalog import Catalog, catalog as installed_catalog
from ..runs import checkpoints, folders as runs
from ..runs.report import write_report
from ..training.settings import TrainConfig

REFERENCE = "junyanz/pytorch-CycleGAN-and-pix2pix"
SUFFIX = ".pth"  # the reference's; `.pt` is img2img's TorchScript export and training state
DEFAULT_SIZE = 256  # the reference's --crop_size; a U-Net defaults to the size it was named for
_WRAPPERS = ("module.", "_orig_mod.")  # what DataParallel and torch.compile put before each key
_RUNNING = ("running_mean", "running_var", "num_batches_tracked")
_LEAF_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3,
               "num_batches_tracked": 4}


class ReferenceFileError(CheckpointError):
    """A file that is not a reference state dict of a layout img2img can import."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a reference state dict says about its network."""

    role: str  # "generator" or "discriminator"
    kind: str  # img2img's generator name ("unet-256", "resnet-9") or "patchgan"
    in_channels: int
    out_channels: int
    width: int  # ngf or ndf: the first layer's filters
    norm: str  # "batch" or "instance"
    dropout: bool | None = None  # None: the state dict cannot tell (a U-Net's has no weights)
    layers: int = 0  # a PatchGAN's stride-2 layers


@dataclasses.dataclass(frozen=True)
class Source:
    """One reference file, read: its path, cleaned tensors and layout."""

    path: Path
    state: dict[str, Tensor]
    layout: Layout


def is_reference_file(ref: str | Path) -> bool:
    """Whether `ref` names a file (not a run folder) with the reference's `.pth` suffix."""
    path = Path(str(ref))
    return path.suffix.lower() == SUFFIX and not path.is_dir()


# -- reading a file -----------------------------------------------------------------------------
def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The file's tensors by key, with DataParallel / torch.compile prefixes stripped and the
    running statistics old PyTorch versions saved on instance norms dropped (as the reference
    does when it loads them). Read with `weights_only=True`: nothing in the file is executed."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ReferenceFileError(f"{path}: no such file") from None
    except Exception as exc:  # truncated zips, random bytes, pickled objects: all unreadable
        raise ReferenceFileError(_unreadable(path, exc)) from None
    if not isinstance(loaded, Mapping) or not loaded:
        raise ReferenceFileError(f"{path} holds {type(loaded).__name__}, not a state dict "
                                 "(names mapped to tensors)")
    for key, value in loaded.items():
        if not isinstance(value, Tensor):
            raise ReferenceFileError(f"{path} is not a state dict: its entry '{key}' is a "
                                     f"{type(value).__name__}, not a tensor")
    return _drop_instance_statistics(_unwrap(loaded))


def _unreadable(path: Path, exc: Exception) -> str:
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:  # the safe unpickler refused to build an object: a pickled model, not a state dict
        return (f"{path} holds Python objects ({found[1]}), not only tensors; img2img reads "
                "plain state dicts and never runs code from a file: save net.state_dict()")
    detail = text.split("WeightsUnpickler error:", 1)[-1]  # past torch's advice, if any
    first = next((line.strip() for line in detail.splitlines() if line.strip()), "")
    return f"{path} is not a readable PyTorch file ({type(exc).__name__}: {first[:200]})"


def _unwrap(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        key = str(key)
        while key.startswith(_WRAPPERS):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _drop_instance_statistics(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # The reference's batch norms are affine; running statistics on a layer without a weight
    # belong to an instance norm of PyTorch < 0.4, which never read them.
    affine = {k.rsplit(".", 1)[0] for k in state if k.endswith(".weight")}
    return {k: v for k, v in state.items()
            if not (k.rsplit(".", 1)[-1] in _RUNNING and k.rsplit(".", 1)[0] not in affine)}


def _order(key: str) -> tuple[Any, ...]:
    """Sort key putting a reference state dict in module order (Sequential indices compare as
    numbers), each layer's entries in the order `state_dict()` lists them."""
    *path, leaf = key.split(".")
    return ([(0, int(p), "") if p.isdigit() else (1, 0, p) for p in path],
            _LEAF_ORDER.get(leaf, len(_LEAF_ORDER)), leaf)


# -- what the state dict says -------------------------------------------------------------------
def infer_layout(state: Mapping[str, Tensor], path: Path) -> Layout:
    """The reference network `state` belongs to: its ResNet or U-Net generator, or PatchGAN."""
    keys = sorted(state, key=_order)
    convs = [k for k in keys if k.endswith(".weight") and state[k].dim() == 4]
    first = state[keys[0]]
    kernel = tuple(first.shape[-2:]) if first.dim() == 4 else ()
    if keys[0] == "model.1.weight" and kernel == (7, 7):  # ResNet: reflection pad, 7x7 stem
        blocks = {k.split(".")[1] for k in keys if ".conv_block." in k}
        # A block's second conv sits at index 6 after a Dropout, else at 5.
        dropout = any(k.split(".")[3] == "6" for k in keys if ".conv_block." in k)
        return Layout("generator", f"resnet-{len(blocks)}", first.shape[1],
                      state[convs[-1]].shape[0], first.shape[0], _norm(state, convs, path),
                      dropout)
    if keys[0] == "model.model.0.weight" and kernel == (4, 4):  # U-Net: nested skip blocks
        # One down conv and one transposed conv per level; the last listed is the outermost up.
        return Layout("generator", f"unet-{2 ** (len(convs) // 2)}", first.shape[1],
                      state[convs[-1]].shape[1], first.shape[0], _norm(state, convs, path))
    if keys[0] == "model.0.weight" and kernel == (4, 4) and len(convs) >= 3:  # PatchGAN
        return Layout("discriminator", "patchgan", first.shape[1], state[convs[-1]].shape[0],
                      first.shape[0], _norm(state, convs, path), layers=len(convs) - 2)
    raise ReferenceFileError(f"{path}: its first key '{keys[0]}' {tuple(first.shape)} fits no "
                             "reference layout (ResNet or U-Net generator, PatchGAN "
                             "discriminator)")


def _norm(state: Mapping[str, Tensor], convs: list[str], path: Path) -> str:
    if any(k.endswith(".weight") and v.dim() == 1 for k, v in state.items()):
        return "batch"  # the reference's batch norms are affine
    if len(convs) > 1 and convs[1][: -len("weight")] + "bias" in state:
        return "instance"  # no parameters of its own; the convs before it keep their bias
    raise ReferenceFileError(f"{path}: a network without normalisation (the reference's --norm "
                             "none) has convolutions without bias, which img2img's networks "
                             "without normalisation do not express")


def read_source(path: Path, role: str) -> Source:
    state = read_state_dict(path)
    layout = infer_layout(state, path)
    if layout.role != role:
        hint = "pass it with --d" if layout.role == "discriminator" else "pass it as a generator"
        raise ReferenceFileError(f"{path} holds a {layout.role}, not a {role}: {hint}")
    return Source(path, state, layout)


def map_onto(state: Mapping[str, Tensor], net: nn.Module, path: Path, what: str
             ) -> dict[str, Tensor]:
    """`state` keyed like `net.state_dict()`: entries paired in module order, each pair checked
    to be the same kind of tensor of the same shape."""
    ours = net.state_dict()
    theirs = sorted(state, key=_order)
    for (mine, target), key in zip(ours.items(), theirs):
        found = state[key]
        if mine.rsplit(".", 1)[-1] != key.rsplit(".", 1)[-1] or found.shape != target.shape:
            raise ReferenceFileError(f"{path}: '{key}' {tuple(found.shape)} does not fit {what} "
                                     f"(expected a {tuple(target.shape)} "
                                     f"{mine.rsplit('.', 1)[-1]} there)")
    if len(theirs) > len(ours):
        raise ReferenceFileError(f"{path}: '{theirs[len(ours)]}' has no place in {what}")
    if len(theirs) < len(ours):
        raise ReferenceFileError(f"{path} ends early: it has no '{list(ours)[len(theirs)]}' "
                                 f"of {what}")
    return {mine: state[key].to(ours[mine].dtype) for mine, key in zip(ours, theirs)}


# -- an img2img model from reference files ------------------------------------------------------
def importable(catalog: Catalog) -> list[str]:
    """Installed models that can take reference weights: they translate, with the shared
    networks (their options derive from `NetworkOptions`)."""
    return sorted(name for name, cls in catalog.models.items()
                  if cls.directions and issubclass(cls.Options, NetworkOptions))


def _family(catalog: Catalog, family: str | None) -> type[Model]:
    choices = ", ".join(importable(catalog)) or "none installed"
    if family is None:
        raise Img2ImgError("a reference file does not say which model trained it: pass "
                           f"--model-family, one of: {choices}")
    if family not in importable(catalog):
        raise Img2ImgError(f"--model-family {family}: not a model that takes reference weights; "
                           f"choose one of: {choices}")
    return catalog.models[family]


def _directions(model_cls: type[Model], count: int, direction: str | None) -> tuple[str, ...]:
    """The direction each generator file maps, in the order the files were given."""
    names = model_cls.directions
    if count > len(names):
        raise Img2ImgError(f"{model_cls.name} has {len(names)} generator(s) ({', '.join(names)}),"
                           f" but {count} generator files were given")
    if direction is None:
        return names[:count]
    if count > 1:
        raise Img2ImgError(f"--direction is for a single generator file; {count} files map "
                           f"{', '.join(names[:count])} in the order given")
    if direction not in names:
        raise Img2ImgError(f"--direction {direction}: {model_cls.name} translates "
                           f"{', '.join(names)}")
    return (direction,)


def _same(sources: Sequence[Source]) -> Layout | None:
    """The one layout all `sources` share (a model builds its networks of a kind alike)."""
    for source in sources[1:]:
        if source.layout != sources[0].layout:
            raise Img2ImgError(f"{sources[0].path} and {source.path} have different layouts "
                               f"({sources[0].layout.kind}, {sources[0].layout.width} wide vs "
                               f"{source.layout.kind}, {source.layout.width} wide); img2img "
                               "builds the networks of one model alike")
    return sources[0].layout if sources else None


def _options(model_cls: type[Model], g: Layout, d: Layout | None, batch_stats: str,
             path: Path) -> Any:
    if g.kind not in GENERATORS:
        raise ReferenceFileError(f"{path} is a {g.kind} generator; img2img builds "
                                 f"{', '.join(GENERATORS)}")
    if g.in_channels != g.out_channels or g.in_channels not in (1, 3):
        raise ReferenceFileError(f"{path} maps {g.in_channels} to {g.out_channels} channels; "
                                 "img2img's models translate grey to grey or colour to colour")
    if batch_stats not in BATCH_STATS:
        raise Img2ImgError(f"--batch-stats {batch_stats}: choose one of {', '.join(BATCH_STATS)}")
    values: dict[str, Any] = {"generator": g.kind, "ngf": g.width, "norm": g.norm,
                              "batch_stats": batch_stats}
    if g.dropout is not None:
        values["dropout"] = g.dropout
    if d is not None:
        if d.norm != g.norm:
            raise Img2ImgError(f"the discriminators use {d.norm} norm, the generators {g.norm}; "
                               f"img2img's {model_cls.name} networks share one --norm")
        values.update(ndf=d.width, d_layers=d.layers)
    return dataclasses.replace(model_cls.Options(), **values)


def _size(g: Layout, size: int | None) -> int:
    multiple = int(g.kind.split("-")[1]) if g.kind.startswith("unet") else 4
    if size is None:
        return multiple if g.kind.startswith("unet") else DEFAULT_SIZE
    if size < multiple or size % multiple:
        raise Img2ImgError(f"--size {size} does not suit a {g.kind} generator, which needs a "
                           f"multiple of {multiple}")
    return size


def _discriminator_names(model: Model, given: Sequence[tuple[str | None, Path]]) -> list[str]:
    names = list(model.discriminators)
    chosen = []
    for name, path in given:
        if name is None and len(names) != 1:
            raise Img2ImgError(f"{model.name} has discriminators {', '.join(names)}: name the "
                               f"one {path} is, as --d NAME={path} (NAME: the domain it judges)")
        name = names[0] if name is None else name
        if name not in names or name in chosen:
            raise Img2ImgError(f"--d {name}={path}: {model.name}'s discriminators are "
                               f"{', '.join(names)}, each given once")
        chosen.append(name)
    return chosen


def _build(model_cls: type[Model], generators: Sequence[tuple[str, Source]],
           discriminators: Sequence[tuple[str | None, Source]], size: int | None,
           batch_stats: str) -> tuple[Model, dict[str, str]]:
    """The model the sources describe with their weights loaded, in eval mode, and which file
    filled which network; networks no file fills keep a fresh (seeded) initialisation."""
    g = _same([s for _, s in generators])
    d = _same([s for _, s in discriminators])
    options = _options(model_cls, g, d, batch_stats, generators[0][1].path)
    with torch.random.fork_rng(devices=[]):
        # The CPU's generator alone: torch.manual_seed would reseed every GPU's, unrestored.
        torch.random.default_generator.manual_seed(0)
        model = model_cls(options, spec=ImageSpec(g.in_channels, _size(g, size)))
    names = _discriminator_names(model, [(n, s.path) for n, s in discriminators])
    files = {}
    for kind, modules, sources in (("generator", model.generators, generators),
                                   ("discriminator", model.discriminators,
                                    list(zip(names, (s for _, s in discriminators))))):
        for name, source in sources:
            what = f"{model.name}'s {kind} '{name}' ({source.layout.kind})"
            net = modules[name]
            net.load_state_dict(map_onto(source.state, net, source.path, what))
            files[f"{kind}s.{name}"] = str(source.path)
    checkpoints.keep_directions(model, [name for name, _ in generators])
    return model.eval(), files


def import_model(generators: Sequence[str | Path], *, family: str | None,
                 direction: str | None = None,
                 discriminators: Sequence[tuple[str | None, str | Path]] = (),
                 size: int | None = None, batch_stats: str = "per-image",
                 catalog: Catalog | None = None) -> tuple[Model, dict[str, Any]]:
    """Reference files as a `family` model in eval mode, and the record its checkpoint keeps.

    `generators` map the model's directions in order (one file: `direction`, default the
    first); `discriminators` are (name or None, file), name = the domain it judges. `size` is
    the training size (default: a U-Net's own, else 256); `batch_stats` what batch norm uses
    at inference ("per-image" like the reference's test.py, or "running" like its --eval)."""
    catalog = catalog if catalog is not None else installed_catalog()
    model_cls = _family(catalog, family)
    if not generators:
        raise Img2ImgError("no generator file given: pass the reference's latest_net_G*.pth")
    names = _directions(model_cls, len(generators), direction)
    sources = [(n, read_source(Path(p), "generator")) for n, p in zip(names, generators)]
    judges = [(n, read_source(Path(p), "discriminator")) for n, p in discriminators]
    model, files = _build(model_cls, sources, judges, size, batch_stats)
    owner = catalog.owners.get(("model", model.name))
    plugin = {"name": owner.name, "distribution": owner.distribution,
              "version": owner.version} if owner else {}
    spec = model.spec
    config = TrainConfig(**{**model_cls.training_defaults, "channels": spec.channels,
                            "crop_size": spec.size, "load_size": spec.size})
    untrained = [f"{kind}.{name}" for kind in ("generators", "discriminators")
                 for name in getattr(model, kind) if f"{kind}.{name}" not in files]
    record = checkpoints.settings_record(model, config, plugin)
    record.update(step=0, directions=list(model.directions), **{checkpoints.IMPORTED: {
        "source": REFERENCE, "networks": files, "untrained": untrained}})
    return model, record


def load_reference(path: str | Path, catalog: Catalog | None = None) -> Model:
    """A reference generator file as a model in memory (what `convert --model FILE.pth` uses):
    the installed model whose default networks are closest to the file's, translating its
    first direction, batch norm with per-image statistics."""
    catalog = catalog if catalog is not None else installed_catalog()
    source = read_source(Path(path), "generator")
    choices = importable(catalog)
    if not choices:
        raise Img2ImgError(f"{path}: no installed model takes reference weights")

    def closeness(name: str) -> int:
        defaults = catalog.models[name].Options()
        return ((defaults.generator.split("-")[0] == source.layout.kind.split("-")[0])
                + (defaults.norm == source.layout.norm))

    # The closest first (ties: by name); a model whose networks are built otherwise (CUT's
    # anti-aliased ResNet) does not take the file, and the next one is tried.
    failures = []
    for name in sorted(choices, key=closeness, reverse=True):
        model_cls = catalog.models[name]
        try:
            model, _ = _build(model_cls, [(model_cls.directions[0], source)], [], None,
                              "per-image")
        except ReferenceFileError as exc:
            failures.append(exc)
            continue
        return model
    raise failures[0]


# -- an ordinary run ----------------------------------------------------------------------------
def import_run(generators: Sequence[str | Path], out: str | Path | None = None, *,
               runs_dir: str | Path = "runs", **options: Any) -> Path:
    """Reference files (see `import_model`, which takes `options`) as a run folder at `out`
    (default: a new one under `runs_dir`) that `convert`, `load`, `eval` and `--init-from`
    use. It holds weights only: a reference checkpoint carries no training state."""
    model, record = import_model(generators, **options)
    target = Path(out) if out is not None else \
        Path(runs_dir) / runs.default_run_name(f"{model.name}-imported")
    return write_run(model, record, target)


def write_run(model: Model, record: Mapping[str, Any], out: Path) -> Path:
    """`model` as a run folder at `out` (config.json, a weights-only checkpoint, the report),
    built in a hidden folder beside it and renamed into place: a failure leaves no half run."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise Img2ImgError(f"{out} already exists; choose a new run folder with -o")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        run = runs.create_run(staging, out.name)
        runs.write_config(run, record)
        checkpoints.save_checkpoint(run, 0, checkpoints.network_tensors(model), record, None)
        write_report(run)
        if out.exists():
            out.rmdir()  # an empty folder the user made for it
        os.replace(run, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
