"""Named encoder features: how a model reads what a generator computes inside, by layer name
rather than by module index, so that a loss written for one generator (CUT's PatchNCE) works with
any generator that declares its layers.

A generator that hands back features has three members:

- `feature_layers`: name -> channel count of every feature it can return, in encoder order;
- `default_feature_layers`: the names a model uses when the user names none;
- `encoder_features(x, layers)`: the `(B, C_i, H_i, W_i)` features named in `layers`, in that
  order, running only as much of the network as they need.

and may have a fourth:

- `forward_with_features(x, layers)`: the output `net(x)` together with those features, read on
  the way through one forward pass, so a loss that needs the input's features as targets does
  not run the encoder a second time.

The built-in ResNet and U-Net generators have them (the walkers below); a plugin's own generator
declares them itself. `feature_layers(net)`, `default_feature_layers(net)`,
`encoder_features(net, x, layers)` and `forward_and_features(net, x, layers)` here check names and
explain what a generator lacks."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from img2img.errors import Img2ImgError

GUIDE = "see 'Generators that hand back features' in plugins/README.md"


def feature_layers(net: nn.Module) -> dict[str, int]:
    """The feature names `net` declares, with their channel counts, in encoder order."""
    layers = getattr(net, "feature_layers", None)
    if layers is None or not hasattr(net, "encoder_features"):
        raise Img2ImgError(f"generator {type(net).__name__} does not declare named encoder "
                           f"features (feature_layers and encoder_features); {GUIDE}")
    return dict(layers)


def default_feature_layers(net: nn.Module) -> tuple[str, ...]:
    """The layers `net` suggests (its `default_feature_layers`, else every layer it declares)."""
    return tuple(getattr(net, "default_feature_layers", None) or feature_layers(net))


def resolve_layers(net: nn.Module, names: str | Sequence[str]) -> tuple[str, ...]:
    """`names` (a comma-separated string or a sequence; empty = the net's defaults), checked
    against what `net` declares."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    chosen = tuple(names) or default_feature_layers(net)
    known = feature_layers(net)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise Img2ImgError(f"generator {type(net).__name__} has no feature layer "
                           f"{', '.join(repr(n) for n in unknown)}; it has: {', '.join(known)}")
    if len(set(chosen)) != len(chosen):
        raise Img2ImgError(f"feature layers named twice: {', '.join(chosen)}")
    return chosen


def encoder_features(net: nn.Module, x: torch.Tensor,
                     layers: Sequence[str]) -> list[torch.Tensor]:
    """`net.encoder_features(x, layers)` after checking the names."""
    return list(net.encoder_features(x, resolve_layers(net, layers)))


def forward_and_features(net: nn.Module, x: torch.Tensor,
                         layers: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`net(x)` (with its graph) and the features named in `layers` of the same pass, detached:
    targets, not part of the graph. Generators without `forward_with_features` get their
    features from a second, partial pass without a graph."""
    layers = resolve_layers(net, layers)
    own = getattr(net, "forward_with_features", None)
    if own is None:
        out = net(x)
        with torch.no_grad():
            found = net.encoder_features(x, layers)
    else:
        out, found = own(x, layers)
    return out, [f.detach() for f in found]


def _forward_capturing(net: nn.Module, x: torch.Tensor, layers: Sequence[str],
                       modules: dict[str, nn.Module]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`net(x)` and the outputs of the modules named in `layers` (`input`: `x` itself), read by
    forward hooks during that one pass."""
    found = {"input": x}
    handles = [modules[name].register_forward_hook(
        lambda _module, _args, out, name=name: found.__setitem__(name, out))
        for name in layers if name != "input"]
    try:
        # Eager: a --compile'd network does not see hooks added after it was compiled (torch
        # skips guarding on them), so the features would never arrive.
        with torch.compiler.set_stance("force_eager"):
            out = net(x)
    finally:
        for handle in handles:
            handle.remove()
    return out, [found[name] for name in layers]


# -- the built-in generators -------------------------------------------------------------------
def _resnet_modules(net: nn.Module) -> dict[str, nn.Module]:
    """`down1`, `down2` (the second and third convs of `net.model`) and `block1` .. `blockN`
    (its residual blocks): the module whose output each feature is."""
    from img2img.networks.resnet import ResnetBlock

    convs = [m for m in net.model if isinstance(m, nn.Conv2d)]
    blocks = [m for m in net.model if isinstance(m, ResnetBlock)]
    named: dict[str, nn.Module] = {f"down{i}": conv for i, conv in enumerate(convs[1:3], 1)}
    named.update({f"block{i}": block for i, block in enumerate(blocks, 1)})
    return named


def resnet_feature_layers(net: nn.Module) -> dict[str, int]:
    """`input`, `down1`, `down2` (each downsampling conv's output, before its norm), then
    `block1` .. `blockN` (each residual block's output)."""
    modules = _resnet_modules(net)
    stem = next(m for m in net.model if isinstance(m, nn.Conv2d))
    width = modules["down2"].out_channels  # the residual blocks keep it
    return {"input": stem.in_channels,
            **{name: getattr(m, "out_channels", width) for name, m in modules.items()}}


def resnet_default_layers(net: nn.Module) -> tuple[str, ...]:
    """CUT's choice for ResNet-9 (Park et al. 2020): the input pixels, both downsampling convs,
    the first and the middle (fifth) residual block; the same places for other depths."""
    blocks = len(resnet_feature_layers(net)) - 3
    return ("input", "down1", "down2", "block1", f"block{(blocks + 1) // 2}")


def resnet_forward_with_features(net: nn.Module, x: torch.Tensor, layers: Sequence[str]):
    return _forward_capturing(net, x, layers, _resnet_modules(net))


def resnet_features(net: nn.Module, x: torch.Tensor,
                    layers: Sequence[str]) -> list[torch.Tensor]:
    names = {id(m): name for name, m in _resnet_modules(net).items()}
    wanted, found = set(layers), {"input": x}
    for module in net.model:
        if len(found.keys() & wanted) == len(wanted):
            break  # the rest of the network is not needed
        x = module(x)
        name = names.get(id(module))
        if name in wanted:
            found[name] = x
    return [found[name] for name in layers]


def _unet_levels(net: nn.Module) -> list[nn.Module]:
    from img2img.networks.unet import UnetLevel

    levels, level = [], net.model
    while isinstance(level, UnetLevel):
        levels.append(level)
        level = level.inner
    return levels


def unet_feature_layers(net: nn.Module) -> dict[str, int]:
    """`input`, then `down1` .. `downN`: each encoder level's output (conv and norm), the maps
    its skip connection and the next level receive."""
    layers = {"input": net.model.down[0].in_channels}
    for i, level in enumerate(_unet_levels(net), 1):
        conv = next(m for m in level.down if isinstance(m, nn.Conv2d))
        layers[f"down{i}"] = conv.out_channels
    return layers


def unet_default_layers(net: nn.Module) -> tuple[str, ...]:
    """The input and the first four encoder levels: as many layers as CUT's ResNet choice, at
    1, 1/2, 1/4, 1/8 and 1/16 resolution, where there are still many patches to contrast."""
    return tuple(list(unet_feature_layers(net))[:5])


def unet_forward_with_features(net: nn.Module, x: torch.Tensor, layers: Sequence[str]):
    return _forward_capturing(net, x, layers, {f"down{i}": level.down
                                               for i, level in enumerate(_unet_levels(net), 1)})


def unet_features(net: nn.Module, x: torch.Tensor,
                  layers: Sequence[str]) -> list[torch.Tensor]:
    wanted, found = set(layers), {"input": x}
    for i, level in enumerate(_unet_levels(net), 1):
        if len(found.keys() & wanted) == len(wanted):
            break
        x = level.down(x)
        found[f"down{i}"] = x
    return [found[name] for name in layers]
