"""`Distillation`: a student generator per direction of a teacher, trained through the one shared
trainer to reproduce what the teacher makes of the same inputs (after GAN Compression, Li et
al. 2020): L1 to the teacher's output (computed on the fly, without gradients), matching of
intermediate features through learned 1x1 projections (student channels -> teacher's), and a
conditional PatchGAN that tells the teacher's output from the student's for the same input.

It is an ordinary model: its networks are the students (`generators`, named after the
directions), the discriminators and the projections (`auxiliary`), so a student run converts,
evaluates, exports, serves and resumes like any run, without its teacher. Its options record the
teacher (path, SHA-256, model) and every choice that shapes the networks; "teacher" and "auto"
values are resolved from the teacher when the model is first built."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import Img2ImgError
from ..fields import option
from ..model import Model
from ..networks.factory import GENERATORS, build_generator
from ..networks.features import encoder_features, forward_and_features
from ..networks.init import init_weights
from ..networks.norm import NORMS, per_sample_batch_norm
from ..networks.patchgan import PatchDiscriminator
from ..networks.resnet import UPSAMPLING
from .teacher import (
    Teacher, format_pairs, load_teacher, pair_features, parse_pairs, projection_channels,
    recorded_option, source_domain, target_domain,
)

FROM_TEACHER = "teacher"


@dataclass(frozen=True)
class Options:
    teacher: str = option("", "the teacher: a run folder, a checkpoint, or a reference .pth "
                              "generator")
    teacher_sha256: str = option("", "SHA-256 of the teacher's weights file: training stops if "
                                     "it changed (empty: recorded when the run starts)")
    teacher_model: str = option("", "the teacher's model (empty: recorded when the run starts)")
    directions: str = option("", "comma-separated directions to distil (empty: every direction "
                                 "the teacher translates)")
    data_kind: str = option(FROM_TEACHER, "the kind of data to train on (teacher: the teacher's)",
                            choices=(FROM_TEACHER, "paired", "unpaired"))
    generator: str = option(FROM_TEACHER, "student network (teacher: the teacher's kind; unet-N "
                                          "fits N px crops, resnet-N has N residual blocks)",
                            choices=(FROM_TEACHER, *GENERATORS))
    ngf: int = option(16, "student width (filters in the first layer)", min=1)
    norm: str = option(FROM_TEACHER, "student normalisation (teacher: the teacher's, else "
                                     "instance)", choices=(FROM_TEACHER, *NORMS))
    upsample: str = option("transposed", "student upsampling (see train pix2pix --help)",
                           choices=UPSAMPLING)
    ndf: int = option(32, "width of the discriminator that tells teacher from student", min=1)
    d_layers: int = option(3, "PatchGAN layers of that discriminator", min=1, max=6)
    features: str = option("auto", "feature pairs STUDENT=TEACHER:CHANNELS, comma-separated "
                                   "(auto: each student default feature layer with the "
                                   "teacher's at the same resolution and relative depth; none: "
                                   "no feature matching)")
    lambda_l1: float = option(100.0, "weight of the L1 distance to the teacher's output (as "
                                     "pix2pix weighs its target)", min=0)
    lambda_features: float = option(1.0, "weight of the feature-matching loss", min=0)
    lambda_gan: float = option(0.1, "weight of the adversarial loss (small: the teacher's "
                                    "outputs are the main signal, the discriminator only "
                                    "sharpens what L1 blurs)", min=0)


class Distillation(Model):
    name = "distill"
    summary = "a smaller student that translates like a teacher run (img2img distill)"
    Options = Options
    training_defaults = {"gan_loss": "lsgan"}
    fakes_per_group = True  # one direction's student graph alive at a time
    smoke_options = {"ngf": 4, "ndf": 8}

    def __init__(self, options: Any = None, **kwargs: Any):
        options = resolve_options(options if options is not None else Options())
        self.directions = tuple(options.directions.split(","))  # type: ignore[misc]
        self.data = options.data_kind  # type: ignore[misc]
        self.pairs = parse_pairs(options.features)
        super().__init__(options, **kwargs)

    @classmethod
    def data_for(cls, options: Any) -> str:
        return resolve_options(options).data_kind

    # -- networks -------------------------------------------------------------------------------
    def _student(self) -> nn.Module:
        o, c = self.options, self.spec.channels
        net = build_generator(o.generator, c, c, ngf=o.ngf, norm=o.norm, dropout=False,
                              size=self.spec.size, upsample=o.upsample)
        return per_sample_batch_norm(net) if o.norm == "batch" else net

    def build_generators(self) -> dict[str, nn.Module]:
        return {d: self._student() for d in self.directions}

    def build_discriminators(self) -> dict[str, nn.Module]:
        o, c = self.options, self.spec.channels  # conditional: judges (input, output) pairs
        return {target_domain(d): init_weights(PatchDiscriminator(2 * c, o.ndf, o.d_layers,
                                                                  "instance"))
                for d in self.directions}

    def build_auxiliary(self) -> dict[str, nn.Module]:
        if not self.pairs:
            return {}
        found = {}
        for d in self.directions:
            channels = projection_channels(self.pairs, self.generators[d])
            found[d] = nn.ModuleDict({s: nn.Conv2d(cs, ct, 1) for s, (cs, ct) in channels.items()})
        return found

    # -- the teacher ----------------------------------------------------------------------------
    @property
    def teacher(self) -> Teacher:
        """Loaded on first use (training, sample grids); converting needs no teacher."""
        return load_teacher(self.options.teacher, expected_sha256=self.options.teacher_sha256)

    @torch.no_grad()
    def teach(self, direction: str, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The teacher's output for `x` and its features the student matches."""
        model = self.teacher.model.to(x.device)
        net = model.generators[direction]
        layers = [t for _, t, _ in self.pairs]
        own_translate = type(model).translate is not Model.translate
        if not layers:
            return model.translate(x, direction), []
        if own_translate:
            return model.translate(x, direction), encoder_features(net, x, layers)
        return forward_and_features(net, x, layers)

    # -- training -------------------------------------------------------------------------------
    def generate(self, batch):
        fakes = {}
        for d in self.directions:
            x, target = batch[source_domain(d)], target_domain(d)
            fakes[f"fake_{target}"] = self.generators[d](x)
            fakes[f"teacher_{target}"] = self.teach(d, x)[0]
        return fakes

    def generator_losses(self, batch, fakes):
        o = self.options
        for d in self.directions:
            x, target = batch[source_domain(d)], target_domain(d)
            wanted, features = self.teach(d, x)
            fakes[f"teacher_{target}"] = wanted
            student = self.generators[d]
            if self.pairs:
                out, found = forward_and_features(student, x, [s for s, _, _ in self.pairs],
                                                  detach=False)
            else:
                out, found = student(x), []
            fakes[f"fake_{target}"] = out.detach()
            terms = {f"l1_{d}": o.lambda_l1 * F.l1_loss(out, wanted)}
            if found and o.lambda_features > 0:
                projections = self.auxiliary[d]
                matched = [F.mse_loss(projections[s](f), t)
                           for (s, _, _), f, t in zip(self.pairs, found, features)]
                terms[f"features_{d}"] = o.lambda_features * sum(matched) / len(matched)
            if o.lambda_gan > 0:
                logits = self.discriminators[target](torch.cat([x, out], 1))
                terms[f"gan_{d}"] = o.lambda_gan * self.adversary.generator_loss(logits)
            yield terms

    def discriminator_losses(self, batch, fakes):
        terms = {}
        for d in self.directions:
            x, target = batch[source_domain(d)], target_domain(d)
            net = self.discriminators[target]
            found = self.adversary.discriminator_losses(
                lambda y, net=net, x=x: net(torch.cat([x, y], 1)), fakes[f"teacher_{target}"],
                fakes[f"fake_{target}"])
            terms.update({f"{target}_{k}": v for k, v in found.items()})
        return terms

    def visuals(self, batch, fakes):
        shown = {}
        for d in self.directions:
            source, target = source_domain(d), target_domain(d)
            shown.update({source: batch[source], f"teacher_{target}": fakes[f"teacher_{target}"],
                          f"fake_{target}": fakes[f"fake_{target}"]})
        return shown


def resolve_options(options: Options) -> Options:
    """`options` with every "teacher"/"auto"/empty value replaced by what the teacher says
    (loading the teacher when one is left); options already complete are returned as they
    are, so a student run rebuilds without its teacher."""
    complete = (options.teacher_sha256 and options.teacher_model and options.directions
                and FROM_TEACHER not in (options.data_kind, options.generator, options.norm)
                and options.features != "auto")
    if complete:
        return options
    teacher = load_teacher(options.teacher, expected_sha256=options.teacher_sha256)
    model = teacher.model
    directions = _directions(options.directions, model)
    generator = options.generator
    if generator == FROM_TEACHER:
        generator = recorded_option(model, "generator")
        if generator not in GENERATORS:
            raise Img2ImgError(f"teacher {teacher.weights}: its generator is not one of the "
                               f"built-in architectures; choose the student's with --generator "
                               f"({', '.join(GENERATORS)})")
    norm = options.norm
    if norm == FROM_TEACHER:
        norm = recorded_option(model, "norm", "instance")
        norm = norm if norm in NORMS else "instance"
    resolved = dataclasses.replace(
        options, teacher_sha256=teacher.sha256, teacher_model=model.name,
        directions=",".join(directions), generator=generator, norm=norm,
        data_kind=model.data if options.data_kind == FROM_TEACHER else options.data_kind)
    if resolved.features == "auto":
        resolved = dataclasses.replace(resolved, features=format_pairs(_auto_pairs(resolved,
                                                                                   model)))
    return resolved


def _directions(given: str, teacher: Model) -> list[str]:
    chosen = [d.strip() for d in given.split(",") if d.strip()] or list(teacher.directions)
    unknown = [d for d in chosen if d not in teacher.directions]
    if unknown:
        raise Img2ImgError(f"--directions: the teacher ({teacher.name}) does not translate "
                           f"{', '.join(unknown)}; it translates {', '.join(teacher.directions)}")
    return chosen


def _auto_pairs(options: Options, teacher: Model) -> list[tuple[str, str, int]]:
    """The feature pairs `auto` means, read from one student built like the run's and the
    teacher's first direction (every direction of a teacher has the same architecture)."""
    c, size = teacher.spec.channels, teacher.spec.size
    student = build_generator(options.generator, c, c, ngf=options.ngf, norm=options.norm,
                              dropout=False, size=size, upsample=options.upsample)
    return pair_features(student, teacher.generators[options.directions.split(",")[0]], c, size)
