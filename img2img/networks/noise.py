"""A noise input for any generator, and the two losses that stop a generator from ignoring it.

`add_noise_input(net, channels, noise_dim)` turns a generator `net(x, *args)` into
`NoisyGenerator`: `net(x, *args, noise=z)` with `z` of shape `(B, noise_dim)`. By default the
noise is tiled over the image and concatenated to it as `noise_dim` extra input channels, and the
generator's first convolution is widened to take them (the image's weights kept, the new ones
initialised as `init_weights` does). A generator that takes noise its own way declares it: a
method `add_noise_input(noise_dim)`, called once, after which its `forward` accepts `noise=`.
`install_noise(model, noise_dim, ...)` does this to every generator of a model (the trainer and
the checkpoint loader call it, so no model code changes); with `noise_dim` 0 it does nothing.

Without `noise=` a `NoisyGenerator` draws its own: fresh Gaussian noise from torch's generator
while training (the trainer seeds it each step), zero noise in eval mode (the output a
translation without a seed gives), or the noise `pinned_noise` fixes. The trainer starts each
step with `begin_noise_step`: a `ZERO_NOISE_RATE` share of the steps give every image zero
noise. With the diversity terms on, only those steps keep the terms a model lists in
`target_terms` (losses that pull an output towards one fixed image: pix2pix's L1 to its target,
CycleGAN's identity terms), so the zero noise learns what a model without noise learns, while
the steps with noise train the outputs of the seeds with the adversarial and diversity terms
alone (as BicycleGAN's random-z branch, Zhu et al. 2017, has no L1 to the target: one target
for every noise is what collapses them). A pass that reads a generated image back (a cycle's
reconstruction) always gets zero noise: its loss asks for the one image it came from.
Conditional GANs learn to ignore such noise (Isola et al. 2017 saw it with pix2pix's dropout):
`mode_seeking_loss` (Mao et al., CVPR 2019, "MSGAN") and `latent_regression_loss` with a
`LatentEncoder` (the cLR term of BicycleGAN, Zhu et al. 2017) reward outputs that depend on it;
`noise_terms` computes them for a model from one extra generator pass per noisy generator, every
`DIVERSITY_EVERY`-th step."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from img2img.errors import Img2ImgError

GUIDE = "see 'Noise input' in plugins/README.md"
EPS = 1e-5  # MSGAN's: keeps 1 / ratio finite when two outputs coincide
ENCODER_PREFIX = "latent_"  # model.auxiliary[f"latent_{generator}"]: its latent encoder
# A training step's noise is zero for every image with this probability (`begin_noise_step`).
# The model's own losses then train the zero noise's output as they train a model without noise,
# and a translation without a seed, which uses zero noise, keeps that model's quality; the other
# steps' noise, with the diversity terms, spreads the outputs of the seeds (benchmarks/README.md,
# "Several outputs per input", has the rates measured).
ZERO_NOISE_RATE = 0.5
# The diversity terms run every 4th step with 4 times their weight (lazy regularisation, as
# StyleGAN2 runs its R1 and path-length terms, Karras et al. 2020): their extra generator pass
# cost pix2pix about 30% of its steps when it ran on every step.
DIVERSITY_EVERY = 4
STEP_OUTPUTS_KEPT = 16  # a step's generator outputs held for `NoisyGenerator.reads_back`


def noise_for_seed(seed: int, noise_dim: int) -> torch.Tensor:
    """The `(noise_dim,)` standard normal vector of `seed`: drawn on the CPU in float32, so the
    same seed gives the same noise on every machine and device."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(noise_dim, generator=generator)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation from `z0` (t=0) to `z1` (t=1) along the last dimension: the
    points keep the norm a Gaussian draw has (a straight line passes near the origin, a noise
    the generator never saw). Falls back to a straight line for (anti)parallel vectors."""
    a, b = F.normalize(z0.float(), dim=-1), F.normalize(z1.float(), dim=-1)
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    if float(sin.abs().min()) < 1e-6:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / sin


def tile_noise(noise: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`(B, N)` noise as `(B, N, H, W)` channels of the size, dtype and device of `like`."""
    b, n = noise.shape
    return noise.to(like).reshape(b, n, 1, 1).expand(b, n, *like.shape[-2:])


class _FirstConv(Exception):
    """Raised by the probe at the first convolution a forward pass reaches."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.conv = conv


def first_convolution(net: nn.Module, channels: int, size: int) -> nn.Conv2d:
    """The first `nn.Conv2d` a forward pass of `net` on a `(1, channels, size, size)` input
    runs (found by stopping the pass there, so the probe costs next to nothing)."""
    handles = [m.register_forward_pre_hook(lambda module, _args: _raise(module))
               for m in net.modules() if isinstance(m, nn.Conv2d)]
    param = next(net.parameters(), None)
    probe = torch.zeros(1, channels, size, size,
                        device=param.device if param is not None else "cpu")
    try:
        with torch.no_grad():
            net(probe)
    except _FirstConv as found:
        return found.conv
    except Exception as exc:  # the probe itself failed: say so, with the generator's words
        raise Img2ImgError(f"generator {type(net).__name__} cannot take a noise input: a probe "
                           f"forward pass failed ({type(exc).__name__}: {exc}); {GUIDE}") from None
    finally:
        for handle in handles:
            handle.remove()
    raise Img2ImgError(f"generator {type(net).__name__} has no convolution to widen for a noise "
                       f"input; give it an add_noise_input(noise_dim) method ({GUIDE})")


def _raise(module: nn.Module) -> None:
    raise _FirstConv(module)


@torch.no_grad()
def widen_input(conv: nn.Conv2d, extra: int) -> None:
    """Give `conv` `extra` more input channels, after its own: their weights start N(0, 0.02)
    (as `init_weights`), the existing weights and bias are kept."""
    weight = conv.weight
    added = torch.randn(weight.shape[0], extra, *weight.shape[2:], device=weight.device,
                        dtype=weight.dtype) * 0.02
    conv.weight = nn.Parameter(torch.cat([weight, added], dim=1))
    conv.in_channels += extra


class NoisyGenerator(nn.Module):
    """`net` with a noise input: `forward(x, *args, noise=None)`, noise `(B, noise_dim)` or
    `(noise_dim,)` (the same for every image). Without `noise`: a fresh draw in training, the
    pinned noise when `pinned_noise` set one, else zero noise. Attributes the wrapper
    does not have (`required_multiple`, `bottleneck_channels` ...) are the wrapped network's;
    its named encoder features are read with the same noise input, `input` being the image."""

    def __init__(self, net: nn.Module, channels: int, noise_dim: int, declared: bool):
        super().__init__()
        self.net = net
        self.channels, self.noise_dim, self.declared = channels, noise_dim, declared
        self.pinned: torch.Tensor | None = None
        # Set by `begin_noise_step`: True, this training step's noise is zero; False, drawn;
        # None (no trainer step), each image's is zero with probability ZERO_NOISE_RATE.
        self.zero_step: bool | None = None
        # The first training forward with a graph since `noise_terms` last ran: (x, args, z, y).
        self.recorded: tuple[torch.Tensor, tuple, torch.Tensor, torch.Tensor] | None = None
        # The outputs (detached) of this training step's passes, shared by a model's noisy
        # generators (`install_noise`), cleared by `begin_noise_step`: a pass whose input is one
        # of them reads a generated image back (a cycle's reconstruction, CUT's features of its
        # fake), so it gets zero noise and is not recorded for the diversity terms.
        self.step_outputs: list[torch.Tensor] = []

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "net":
                raise
            return getattr(self._modules["net"], name)

    def noise(self, x: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """The `(B, noise_dim)` noise for a batch `x`: `given`, pinned, drawn in training (zero
        on a zero step of `begin_noise_step`, and for a pass that `reads_back` a generated image;
        outside a step, for a `ZERO_NOISE_RATE` share of the images) or zero."""
        z = given if given is not None else self.pinned
        if z is None and self.training and not self.zero_step and not self.reads_back(x):
            z = torch.randn(x.shape[0], self.noise_dim, device=x.device)
            if self.zero_step is None:
                z = z * (torch.rand(x.shape[0], 1, device=x.device) >= ZERO_NOISE_RATE)
        if z is None:
            z = torch.zeros(self.noise_dim)
        z = z.to(x.device, torch.float32)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        if z.shape[-1] != self.noise_dim:
            raise Img2ImgError(f"noise of size {z.shape[-1]} given to a generator with "
                               f"--noise-dim {self.noise_dim}")
        # Compared with x's batch (not with 1), so an exported graph keeps its batch dynamic.
        return z if z.shape[0] == x.shape[0] else z.expand(x.shape[0], -1)

    def reads_back(self, x: torch.Tensor) -> bool:
        """Whether `x` is (a view of) an output a noisy generator of the model gave this training
        step. Such a pass maps a generated image back (CycleGAN's reconstruction, whose cycle
        loss asks for the one input it came from): with drawn noise that loss would teach the
        generator to ignore its noise, and the diversity terms would pull the other way."""
        if not self.step_outputs:
            return False
        storage = x.untyped_storage().data_ptr()
        return any(out.untyped_storage().data_ptr() == storage for out in self.step_outputs)

    def _input(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, tile_noise(z, x)], dim=1)

    def _record(self, x: torch.Tensor, args: tuple, z: torch.Tensor, y: torch.Tensor) -> None:
        if not (self.training and torch.is_grad_enabled()):
            return
        if self.recorded is None and not self.reads_back(x):
            self.recorded = (x.detach(), args, z, y.detach())
        # Held (detached, so no graph is kept) until the next step starts: while held, no other
        # tensor can take the storage address `reads_back` compares. A loop that never calls
        # `begin_noise_step` holds the last few only.
        self.step_outputs.append(y.detach())
        del self.step_outputs[:-STEP_OUTPUTS_KEPT]

    def forward(self, x: torch.Tensor, *args: Any, noise: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        z = self.noise(x, noise)
        if self.declared:
            y = self.net(x, *args, noise=z, **kwargs)
        else:
            y = self.net(self._input(x, z), *args, **kwargs)
        self._record(x, args, z, y)
        return y

    # Named encoder features (img2img.networks.features), read with a noise input.
    @property
    def feature_layers(self) -> dict[str, int]:
        layers = dict(self.net.feature_layers)
        return {**layers, "input": self.channels} if "input" in layers else layers

    @property
    def default_feature_layers(self) -> tuple[str, ...]:
        return tuple(self.net.default_feature_layers)

    def _features(self, x: torch.Tensor, found: Sequence[torch.Tensor],
                  layers: Sequence[str]) -> list[torch.Tensor]:
        return [x if name == "input" else f for name, f in zip(layers, found)]

    def encoder_features(self, x: torch.Tensor, layers: Sequence[str],
                         noise: torch.Tensor | None = None) -> list[torch.Tensor]:
        z = self.noise(x, noise)
        if self.declared:
            return list(self.net.encoder_features(x, layers, noise=z))
        return self._features(x, self.net.encoder_features(self._input(x, z), layers), layers)

    @property
    def forward_with_features(self) -> Any:
        own = self.net.forward_with_features  # AttributeError: the wrapped net has none either

        def run(x: torch.Tensor, layers: Sequence[str]) -> tuple[torch.Tensor, list]:
            z = self.noise(x)
            if self.declared:
                y, found = own(x, layers, noise=z)
            else:
                y, found = own(self._input(x, z), layers)
                found = self._features(x, found, layers)
            self._record(x, (), z, y)
            return y, found
        return run


def add_noise_input(net: nn.Module, channels: int, noise_dim: int,
                    size: int = 64) -> NoisyGenerator:
    """`net` as a `NoisyGenerator` with `noise_dim` noise channels: the injection `net` declares
    (`add_noise_input`), else tiled channels concatenated to its `channels`-channel input, for
    which its first convolution (on a `size` px probe) must take exactly those channels. Either
    way the noise must then change the output (`check_noise_reaches`)."""
    if noise_dim < 1:
        raise ValueError(f"noise_dim must be at least 1, got {noise_dim}")
    own = getattr(net, "add_noise_input", None)
    if own is not None:
        own(noise_dim)
        return check_noise_reaches(NoisyGenerator(net, channels, noise_dim, declared=True))
    size = max(size, getattr(net, "minimum_size", 0))
    multiple = getattr(net, "required_multiple", 1)
    conv = first_convolution(net, channels, math.ceil(size / multiple) * multiple)
    if conv.in_channels != channels or conv.groups != 1:
        raise Img2ImgError(f"generator {type(net).__name__}: its first convolution takes "
                           f"{conv.in_channels} channels (groups {conv.groups}), not the image's "
                           f"{channels}, so the noise cannot be concatenated to its input; give "
                           f"it an add_noise_input(noise_dim) method ({GUIDE})")
    widen_input(conv, noise_dim)
    return check_noise_reaches(NoisyGenerator(net, channels, noise_dim, declared=False))


@torch.no_grad()
def check_noise_reaches(noisy: NoisyGenerator) -> NoisyGenerator:
    """`noisy`, once a probe shows that its noise changes the output. Tiled noise channels are
    spatially constant, and a normalisation right after the first convolution (instance norm)
    subtracts each channel's spatial mean: it erases them exactly, the generator can never use
    its noise, and the mode-seeking term would chase a ratio stuck at 0. The probe compares the
    outputs for two noises with those for two images (eval mode, so nothing is updated; the
    smallest size the generator takes; its own random stream, so training is unchanged)."""
    net = noisy.net
    multiple = getattr(net, "required_multiple", 1)
    side = math.ceil(max(16, getattr(net, "minimum_size", 0)) / multiple) * multiple
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    stream = torch.Generator().manual_seed(0)
    x = (torch.rand(2, noisy.channels, side, side, generator=stream) * 2 - 1).to(device)
    z = torch.stack([noise_for_seed(0, noisy.noise_dim), noise_for_seed(1, noisy.noise_dim)])
    was_training = noisy.training
    noisy.eval()
    try:
        by_noise = noisy(x[:1].expand(2, -1, -1, -1), noise=z.to(device)).float()
        by_image = noisy(x, noise=z[:1].expand(2, -1).to(device)).float()
    finally:
        noisy.train(was_training)
    noise_change = float((by_noise[0] - by_noise[1]).abs().max())
    image_change = float((by_image[0] - by_image[1]).abs().max())
    if image_change > 0 and noise_change <= 1e-4 * image_change:
        how = "its add_noise_input(noise_dim)" if noisy.declared else \
            "tiled noise channels at its first convolution (a per-image normalisation right " \
            "after it, such as instance norm, erases them)"
        raise Img2ImgError(f"--noise-dim: generator {type(net).__name__} ignores the noise given "
                           f"through {how}: two noises gave the same output; give it an "
                           f"add_noise_input(noise_dim) method that injects the noise after its "
                           f"normalisation ({GUIDE})")
    return noisy


class LatentEncoder(nn.Module):
    """Recovers the noise from an output: `(B, C, H, W)` -> `(B, noise_dim)`. Three stride-2 4x4
    convolutions (LeakyReLU 0.2), a global average and a linear layer: small next to the
    generator, and any image size works."""

    def __init__(self, channels: int, noise_dim: int, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        widths = [channels, width, 2 * width, 2 * width]
        for cin, cout in zip(widths, widths[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(widths[-1], noise_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def mode_seeking_loss(out1: torch.Tensor, out2: torch.Tensor, z1: torch.Tensor,
                      z2: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """MSGAN's term (Mao et al. 2019, eq. 3) for two outputs of one input under noises z1, z2:

        ratio = mean|out1 - out2| / mean|z1 - z2|,   loss = 1 / (ratio + eps)

    (means over every element, eps = 1e-5 as in the paper's code). Minimising it maximises the
    ratio: different noise, different images."""
    ratio = (out1 - out2).abs().float().mean() / (z1 - z2).abs().float().mean()
    return 1.0 / (ratio + eps)


def latent_regression_loss(recovered: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """BicycleGAN's cLR term: `mean|E(G(x, z)) - z|`, the L1 distance between the noise an
    encoder recovers from an output and the noise that made it."""
    return (recovered.float() - noise.float()).abs().mean()


def noisy_generators(generators: Mapping[str, nn.Module]) -> dict[str, NoisyGenerator]:
    """The generators (a model's `generators`) that take noise, by name."""
    return {name: net for name, net in generators.items() if isinstance(net, NoisyGenerator)}


def noise_dim_of(model: Any) -> int:
    """How many noise values `model`'s generators take (0: none take noise)."""
    return max((g.noise_dim for g in noisy_generators(model.generators).values()), default=0)


def install_noise(model: Any, noise_dim: int, mode_seeking: float = 0.0,
                  latent_regression: float = 0.0) -> None:
    """Give every generator of `model` (an `img2img.Model`) a noise input of `noise_dim` values
    and, with `latent_regression`, a `LatentEncoder` per generator as an auxiliary network
    (`auxiliary["latent_<generator>"]`, trained with the generators). The loss weights are kept
    on the generators for `noise_terms`. `noise_dim` 0 changes nothing at all."""
    if noise_dim == 0:
        if mode_seeking or latent_regression:
            raise Img2ImgError("--mode-seeking and --latent-regression need a noise input: set "
                               "--noise-dim N (e.g. 8)")
        return
    if not model.directions:
        raise Img2ImgError(f"--noise-dim: model '{model.name}' generates from noise already; a "
                           "noise input is for models that translate images")
    channels, size = model.spec.channels, model.spec.size
    step_outputs: list[torch.Tensor] = []  # one list: each sees what the others generated
    for name in list(model.generators):
        noisy = add_noise_input(model.generators[name], channels, noise_dim, size)
        noisy.mode_seeking, noisy.latent_regression = float(mode_seeking), float(latent_regression)
        noisy.step_outputs = step_outputs
        model.generators[name] = noisy
        if latent_regression:
            device = next(noisy.parameters()).device
            model.auxiliary[ENCODER_PREFIX + name] = LatentEncoder(channels, noise_dim).to(device)


@contextlib.contextmanager
def pinned_noise(model: Any, noise: torch.Tensor | None) -> Iterator[None]:
    """Within the block, every noisy generator of `model` uses `noise` (`(noise_dim,)` or
    `(B, noise_dim)`) when a call passes none; None leaves them as they are."""
    nets = list(noisy_generators(model.generators).values())
    before = [net.pinned for net in nets]
    for net in nets:
        if noise is not None:
            net.pinned = noise
    try:
        yield
    finally:
        for net, old in zip(nets, before):
            net.pinned = old


def noise_terms(model: Any, step: int = 0) -> dict[str, torch.Tensor]:
    """The weighted diversity terms of training step `step`, from one more pass of each noisy
    generator that ran with a graph this step: its first input `x` again with fresh noise `z2`,
    compared with the recorded output `y1` (for `z1`, detached: its graph belongs to the model's
    own losses). `mode_seeking`: W * `mode_seeking_loss(y1, G(x, z2), z1, z2)`;
    `latent_regression`: W * `latent_regression_loss(E(G(x, z2)), z2)`; both on every
    `DIVERSITY_EVERY`-th step only, W multiplied by it (none on the others). Clears the
    records."""
    terms: dict[str, torch.Tensor] = {}
    for name, net in noisy_generators(model.generators).items():
        recorded, net.recorded = net.recorded, None
        ms, lr = getattr(net, "mode_seeking", 0.0), getattr(net, "latent_regression", 0.0)
        if recorded is None or not (ms or lr) or step % DIVERSITY_EVERY:
            continue
        ms, lr = ms * DIVERSITY_EVERY, lr * DIVERSITY_EVERY
        x, args, z1, y1 = recorded
        z2 = torch.randn_like(z1)
        y2 = net(x, *args, noise=z2)
        net.recorded = None  # that pass recorded itself
        if ms:
            term = ms * mode_seeking_loss(y1, y2, z1, z2)
            terms["mode_seeking"] = terms.get("mode_seeking", 0) + term
        if lr:
            encoder = model.auxiliary[ENCODER_PREFIX + name]
            term = lr * latent_regression_loss(encoder(y2), z2)
            terms["latent_regression"] = terms.get("latent_regression", 0) + term
    return terms


def trains_diversity(model: Any) -> bool:
    """Whether a noisy generator of `model` has a mode-seeking or latent-regression weight."""
    return any(getattr(net, "mode_seeking", 0.0) or getattr(net, "latent_regression", 0.0)
               for net in noisy_generators(model.generators).values())


def begin_noise_step(model: Any) -> bool:
    """Start a training step of `model`: with probability `ZERO_NOISE_RATE` every noisy
    generator uses zero noise for every image of the step, else fresh noise (one draw from
    torch's generator, which the trainer seeds per step). Returns True when the step's noise is
    drawn, False when it is zero or the model takes no noise."""
    nets = noisy_generators(model.generators).values()
    if not nets:
        return False
    zero = bool(torch.rand(()) < ZERO_NOISE_RATE)
    for net in nets:
        net.zero_step = zero
        net.step_outputs.clear()
    return not zero


def with_noise_terms(model: Any, groups: Iterator[Mapping[str, torch.Tensor]], step: int = 0,
                     noisy: bool = False) -> Iterator[Mapping[str, torch.Tensor]]:
    """The model's generator loss groups, then (when a noisy generator asks for them) one more
    group with `noise_terms`: backpropagated on its own, so it needs no model code. When the
    diversity terms are on (`--mode-seeking`, `--latent-regression`) and the step's noise is
    drawn (`noisy`, from `begin_noise_step`), the terms the model lists in `target_terms` are
    left out (a group left empty is skipped): with noise alone they stay on every step, and the
    generator learns to ignore its noise, as Isola et al. saw pix2pix do."""
    dropped = set(getattr(model, "target_terms", ())) if noisy and trains_diversity(model) \
        else set()
    for group in groups:
        kept = {name: term for name, term in group.items() if name not in dropped}
        if kept:
            yield kept
    terms = noise_terms(model, step)
    if terms:
        yield terms
