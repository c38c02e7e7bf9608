"""The teacher of a distillation: loading it (a run folder, a checkpoint, or a reference `.pth`
generator) with the hash of its weights, checking that it can teach (it translates images, from
paired or unpaired data, without class labels), and what a student learns from it: the images
each direction reads, and which of the student's named features match which of the teacher's
(`pair_features`, by resolution and relative depth)."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, Img2ImgError
from ..interop import reference
from ..model import Model
from ..networks.features import default_feature_layers, encoder_features, feature_layers
from ..registry.catalog import Catalog, catalog as installed_catalog
from ..runs import checkpoints

TEACHING_DATA = ("paired", "unpaired")


@dataclass(frozen=True)
class Teacher:
    """A loaded teacher: the model (eval mode, CPU, no gradients), the file its weights came
    from and that file's SHA-256."""

    model: Model
    weights: Path
    sha256: str

    @property
    def data(self) -> str:
        return self.model.data


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_LOADED: dict[tuple[str, str], Teacher] = {}  # the last teacher loaded, by file and hash


def load_teacher(ref: str | Path, catalog: Catalog | None = None,
                 expected_sha256: str = "") -> Teacher:
    """The teacher `ref` names, checked to translate; with `expected_sha256`, its weights must
    be the ones a student was distilled from. Loaded once per file and content."""
    if not str(ref):
        raise Img2ImgError("distillation needs a teacher: --teacher RUN (a run folder, a "
                           "checkpoint or a reference .pth generator)")
    path = Path(ref)
    if reference.is_reference_file(path):
        weights = path
    else:
        try:
            weights = checkpoints.resolve_checkpoint(path)
        except CheckpointError as exc:
            raise CheckpointError(f"teacher {ref}: {exc}") from None
    digest = sha256(weights)
    if expected_sha256 and digest != expected_sha256:
        raise CheckpointError(f"teacher {weights} has changed since the student was distilled "
                              f"from it (SHA-256 {digest[:12]}..., recorded "
                              f"{expected_sha256[:12]}...); distil a new student from it")
    key = (str(weights.resolve()), digest)
    if key not in _LOADED:
        model = _load_model(weights, catalog)
        check_teacher(model, weights)
        model.eval().requires_grad_(False)
        _LOADED.clear()
        _LOADED[key] = Teacher(model, weights, digest)
    return _LOADED[key]


def _load_model(weights: Path, catalog: Catalog | None) -> Model:
    catalog = catalog if catalog is not None else installed_catalog()
    if reference.is_reference_file(weights):
        return reference.load_reference(weights, catalog)
    name = checkpoints.read_metadata(weights).get("model", "?")
    if name not in catalog.models:
        raise CheckpointError(f"teacher {weights} is a '{name}' model, which no installed "
                              "plugin provides")
    return checkpoints.model_from_checkpoint(catalog.models[name], weights)


def check_teacher(model: Model, weights: Path) -> None:
    """Why `model` cannot teach, as an error naming `weights`: it must translate images, from
    paired or unpaired data, without class or style labels."""
    if not model.directions:
        raise Img2ImgError(f"teacher {weights} is a '{model.name}' model, which generates "
                           "images from noise; distil a model that translates images")
    if model.data not in TEACHING_DATA:
        raise Img2ImgError(f"teacher {weights} trains on {model.data} data; distillation "
                           f"takes models trained on {' or '.join(TEACHING_DATA)} data")
    if model.spec.classes:
        raise Img2ImgError(f"teacher {weights} was trained with classes or styles "
                           f"({', '.join(model.spec.classes)}); distillation takes teachers "
                           "without them")
    for direction in model.directions:
        source_domain(direction)


def source_domain(direction: str) -> str:
    """The batch key of the images `direction` ("a_to_b") translates: "a"."""
    source, sep, target = direction.partition("_to_")
    if not sep or source not in ("a", "b") or target not in ("a", "b"):
        raise Img2ImgError(f"cannot tell which images direction '{direction}' reads: "
                           "distillation takes directions named a_to_b or b_to_a")
    return source


def target_domain(direction: str) -> str:
    return direction.partition("_to_")[2]


def recorded_option(model: Model, name: str, default: Any = None) -> Any:
    """A teacher's option by name (e.g. its `generator`, `norm`, `ngf`), or `default` for a
    model whose options have no such field."""
    return getattr(model.options, name, default)


# -- which features match -----------------------------------------------------------------------
def _feature_shapes(net: nn.Module, layers: list[str], channels: int, size: int
                    ) -> dict[str, int]:
    """Each named layer's resolution (its height) on a `size` px input."""
    was_training = net.training
    device = next(net.parameters()).device
    try:
        net.eval()
        with torch.no_grad():
            found = encoder_features(net, torch.zeros(1, channels, size, size, device=device),
                                     layers)
    finally:
        net.train(was_training)
    return {name: int(f.shape[-2]) for name, f in zip(layers, found)}


def pair_features(student: nn.Module, teacher: nn.Module, channels: int, size: int
                  ) -> list[tuple[str, str, int]]:
    """(student layer, teacher layer, teacher channels) for each of the student's chosen
    features (its `default_feature_layers`, the input pixels aside) that the teacher has a
    feature at the same resolution for: at the same relative depth among the layers of that
    resolution (ResNet-6 block3 -> ResNet-9 block5; same architectures pair by name). Empty
    when either network declares no features."""
    try:
        s_all = [n for n in feature_layers(student) if n != "input"]
        t_all = [n for n in feature_layers(teacher) if n != "input"]
    except Img2ImgError:
        return []
    chosen = [n for n in default_feature_layers(student) if n != "input"]
    s_res = _feature_shapes(student, s_all, channels, size)
    t_res = _feature_shapes(teacher, t_all, channels, size)
    t_channels = feature_layers(teacher)
    pairs = []
    for name in chosen:
        peers = [n for n in s_all if s_res[n] == s_res[name]]
        targets = [n for n in t_all if t_res[n] == s_res[name]]
        if not targets:
            continue
        position = peers.index(name) / max(len(peers) - 1, 1)
        match = targets[round(position * (len(targets) - 1))]
        pairs.append((name, match, int(t_channels[match])))
    return pairs


def format_pairs(pairs: list[tuple[str, str, int]]) -> str:
    """The `features` option's text: `down1=down1:64,block3=block5:256` ("none" when empty)."""
    return ",".join(f"{s}={t}:{c}" for s, t, c in pairs) or "none"


def parse_pairs(text: str) -> list[tuple[str, str, int]]:
    """What `format_pairs` wrote, back; a clear error for anything else."""
    if text in ("", "none"):
        return []
    pairs = []
    for item in text.split(","):
        student, sep, rest = item.strip().partition("=")
        teacher, sep2, count = rest.partition(":")
        if not (sep and sep2 and student and teacher and count.isdigit()):
            raise Img2ImgError(f"--features: '{item}' is not STUDENT_LAYER=TEACHER_LAYER:CHANNELS "
                               "(e.g. down1=down1:64), 'auto' or 'none'")
        pairs.append((student, teacher, int(count)))
    return pairs


def projection_channels(pairs: list[tuple[str, str, int]], student: nn.Module
                        ) -> Mapping[str, tuple[int, int]]:
    """Student layer -> (its channels, the teacher layer's channels), checked against what the
    student declares."""
    declared = feature_layers(student)
    unknown = [s for s, _, _ in pairs if s not in declared]
    if unknown:
        raise Img2ImgError(f"--features: the student has no feature layer "
                           f"{', '.join(unknown)}; it has: {', '.join(declared)}")
    return {s: (int(declared[s]), c) for s, _, c in pairs}
