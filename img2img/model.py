"""The contract every model plugin implements. Class attributes say what a model is (name, data
kind, options); a few methods say what to compute. The trainer decides how to optimise: a model
never calls `backward()`, `step()` or `zero_grad()`. A model is an `nn.Module` whose networks
are its sub-modules, so moving, mode switching, parameters and `state_dict()` come from torch."""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from .errors import Img2ImgError
from .networks.losses import Adversary

DATA_KINDS = ("paired", "unpaired", "labelled", "images")
Batch = Mapping[str, Tensor]
Losses = Mapping[str, Tensor]


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """What the data looks like: channel count, training size, class names (labelled data)."""

    channels: int = 3
    size: int = 256
    classes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A model with no options of its own."""


class Model(nn.Module, abc.ABC):
    """Base class of every model. Subclasses set:

    - `name`: the command name (`img2img train <name>`).
    - `data`: "paired" (batches hold `a`, `b`), "unpaired" (`a`, `b`, unrelated), "labelled"
      (`image`, `label`) or "images" (`image` only: one folder; the model derives its inputs).
      Images are float (B,C,H,W) in [-1, 1] on the training device.
    - `Options`: a frozen dataclass; each field becomes a `--flag` whose help is
      `field(metadata={"help": ...})`.
    - `summary`: one line for `img2img models`.
    - `training_defaults`: TrainConfig values this model prefers (e.g. `{"gan_loss": "lsgan"}`).
    - `directions`: the directions `translate` accepts, first is the default; empty for models
      that generate from noise.
    - Labels: a model trained on data with class (or style) sub-folders sees their names in
      `spec.classes`. Its `translate` then also receives `label=`, a (B,) long tensor of class
      indices (the core resolves a user's `--style`/`--label` name with `resolve_label`); a
      model trained without classes is never passed `label`.
    - `smoke_options`: option values small enough for a 32 px test in seconds (narrow widths);
      `img2img.testing.check_model` uses them.
    - `target_terms`: the generator loss terms that pull an output towards one fixed image
      (pix2pix's L1); with a noise input and a diversity term they train the zero noise only.

    and implement `build_generators`, `build_discriminators`, `generate`, `generator_losses`,
    `discriminator_losses`; a model that translates declares `directions` (the default
    `translate` runs `generators[direction]`), one that generates from noise implements
    `sample`; the catalog rejects a model that does neither. Networks are reachable afterwards as
    `self.generators[...]` and `self.discriminators[...]`; a model that trains networks beside
    its generators (a projection head) returns them from `build_auxiliary`, as
    `self.auxiliary[...]`. They are the model's sub-modules: `state_dict()` names them
    `generators.<name>.*`, `discriminators.<name>.*` and `auxiliary.<name>.*`, the keys of a
    checkpoint.
    """

    name: ClassVar[str] = ""
    data: ClassVar[str] = "paired"
    summary: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    training_defaults: ClassVar[Mapping[str, Any]] = {}
    directions: ClassVar[tuple[str, ...]] = ()
    smoke_options: ClassVar[Mapping[str, Any]] = {}
    # True: a training step starts from no fakes, and each loss group makes the fake it uses
    # through `fake()`, so one group's generator graph is freed before the next is built.
    fakes_per_group: ClassVar[bool] = False
    # The generator loss terms (names in `generator_losses`' groups) that pull an output towards
    # one fixed image: a paired target, the input itself. Trained with a noise input
    # (`--noise-dim`) and a diversity term (`--mode-seeking`, `--latent-regression`), they apply
    # on the steps whose noise is zero only, since one target for every noise collapses the
    # outputs of the seeds (img2img.networks.noise).
    target_terms: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Any = None, *, spec: ImageSpec = ImageSpec(),
                 adversary: Adversary | None = None):
        super().__init__()
        self.options = options if options is not None else self.Options()
        self.spec = spec
        self.adversary = adversary or Adversary(self.training_defaults.get("gan_loss", "vanilla"))
        self.generators = nn.ModuleDict(self.build_generators())
        self.discriminators = nn.ModuleDict(self.build_discriminators())
        self.auxiliary = nn.ModuleDict(self.build_auxiliary())

    # -- what a plugin implements -------------------------------------------------------------
    @abc.abstractmethod
    def build_generators(self) -> dict[str, nn.Module]:
        """Return the generator networks, named after what they map (`a_to_b`, `b_to_a`)."""

    @abc.abstractmethod
    def build_discriminators(self) -> dict[str, nn.Module]:
        """Return the discriminator networks, named after the domain they judge (`a`, `b`)."""

    @abc.abstractmethod
    def generate(self, batch: Batch) -> dict[str, Tensor]:
        """Run the generators on a batch; return the fakes (and reconstructions) by name."""

    @abc.abstractmethod
    def generator_losses(self, batch: Batch, fakes: dict[str, Tensor]) -> Losses | Iterable[Losses]:
        """Return the weighted generator loss terms, or yield them in groups.

        A group is backpropagated as soon as it arrives, so only one group's activations are
        alive at a time; the summed gradient is the same as one backward of all terms. Each term
        is logged as `g/<key>`."""

    @abc.abstractmethod
    def discriminator_losses(self, batch: Batch, fakes: dict[str, Tensor]) -> Losses:
        """Return the weighted discriminator loss terms; `fakes` are detached."""

    # -- optional -------------------------------------------------------------------------------
    def build_auxiliary(self) -> dict[str, nn.Module]:
        """Networks trained with the generators (same optimiser, schedule and step) that only the
        losses use, such as CUT's projection head: saved and resumed with the run, not used by
        `translate` and never exported. None by default."""
        return {}

    def translate(self, images: Tensor, direction: str | None = None,
                  label: Tensor | None = None) -> Tensor:
        """Translate (B,C,H,W) images in [-1, 1] in `direction` (default: the first one); runs
        trained with classes also get `label` (see the class docstring). By default the
        generator named after the direction runs on the images (and the label, when given)."""
        generator = self.generators[self.resolve_direction(direction)]
        return generator(images) if label is None else generator(images, label)

    def sample(self, labels: Tensor, n: int | None = None) -> Tensor:
        """Generate images for class `labels` (models that generate from noise)."""
        raise Img2ImgError(f"model '{self.name}' translates images, it does not sample them")

    def generator_step(self, batch: Batch) -> tuple[dict[str, Tensor], Losses | Iterable[Losses]]:
        """The fakes and the generator loss (or its groups) of one training step: `generate`
        then `generator_losses`, or, with `fakes_per_group`, an empty dict that the groups fill
        through `fake()`; once the groups are exhausted it must hold every fake
        `discriminator_losses` needs."""
        fakes = {} if self.fakes_per_group else self.generate(batch)
        return fakes, self.generator_losses(batch, fakes)

    def fake(self, fakes: dict[str, Tensor], name: str, make: Callable[[], Tensor]) -> Tensor:
        """The fake `name`, made once per step: `fakes[name]` when `generate` (or an earlier
        group) made it, else `make()`, kept in `fakes` detached (for `discriminator_losses` and
        the sample grids) while the group gets it with its graph."""
        if name in fakes:
            return fakes[name]
        made = make()
        fakes[name] = made.detach()
        return made

    def visuals(self, batch: Batch, fakes: dict[str, Tensor]) -> dict[str, Tensor]:
        """The images a sample grid shows, as columns: by default the inputs then the fakes."""
        shown = {k: v for k, v in batch.items() if v.dim() == 4}
        shown.update({k: v for k, v in fakes.items() if v.dim() == 4})
        return shown

    def health_signals(self) -> Mapping[str, Tensor | float]:
        """Signals of the model's own for the training log, by name: called on each log step
        and written to `metrics.jsonl` as `health/<name>` (a 0-dim tensor stays on the device
        until then; a distributed run logs the mean over processes). None by default; the
        trainer's own (gradient norms, the discriminator's decisions, diversity) need none."""
        return {}

    def extra_state(self) -> dict[str, Tensor]:
        """Training state beyond the weights that resume must restore (e.g. image pools)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Tensor]) -> None:
        """Restore what `extra_state` returned."""

    @classmethod
    def data_for(cls, options: Any) -> str:
        """The kind of data a model with `options` trains on: `data`, unless the kind depends
        on the options (a distillation student trains on its teacher's kind of data); the
        trainer opens the dataset with it before the model is built."""
        return cls.data

    # -- provided -------------------------------------------------------------------------------
    def resolve_direction(self, direction: str | None) -> str:
        """The direction to translate in, checked against `directions`."""
        if not self.directions:
            raise Img2ImgError(f"model '{self.name}' generates images from noise, it does not "
                               "translate them; use its own command (see `img2img --help`)")
        if direction is None:
            return self.directions[0]
        if direction not in self.directions and len(self.directions) == 1:
            raise Img2ImgError(f"model '{self.name}' has no direction '{direction}': it "
                               f"translates one way only, {self.directions[0]}")
        if direction not in self.directions:
            raise Img2ImgError(f"model '{self.name}' has no direction '{direction}'; "
                               f"choose one of: {', '.join(self.directions)}")
        return direction

    def resolve_label(self, name: str | None) -> int | None:
        """The class index `translate` should use for class/style `name` (None: the first
        class), or None for a model trained without classes, which refuses a name."""
        classes = self.spec.classes
        if not classes:
            if name is not None:
                raise Img2ImgError(f"--style/--label '{name}': this {self.name} run was trained "
                                   "without classes or styles (no sub-folders in its data)")
            return None
        if name is None:
            return 0
        if name not in classes:
            raise Img2ImgError(f"unknown style/label '{name}'; this run knows: "
                               f"{', '.join(classes)}")
        return classes.index(name)
