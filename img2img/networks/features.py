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

The built-in ResNet and U-Net generators have them (each walks its own layers, in `resnet.py` and
`unet.py`); a plugin's own generator declares them itself. `feature_layers(net)`,
`default_feature_layers(net)`, `encoder_features(net, x, layers)` and
`forward_and_features(net, x, layers)` here check names and explain what a generator lacks;
`forward_capturing` reads named modules' outputs during one pass, for generators to build on."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


def forward_and_features(net: nn.Module, x: torch.Tensor, layers: Sequence[str], *,
                         detach: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`net(x)` (with its graph) and the features named in `layers` of the same pass, detached:
    targets, not part of the graph. Generators without `forward_with_features` get their
    features from a second, partial pass without a graph. With `detach=False` the features
    keep their graph (a loss on them trains the generator: distillation's feature matching),
    and a second pass, where needed, keeps it too."""
    layers = resolve_layers(net, layers)
    own = getattr(net, "forward_with_features", None)
    if own is None:
        out = net(x)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach):
            found = net.encoder_features(x, layers)
    else:
        out, found = own(x, layers)
    return out, [f.detach() for f in found] if detach else list(found)


def forward_capturing(net: nn.Module, x: torch.Tensor, layers: Sequence[str],
                      modules: dict[str, nn.Module], **kwargs: Any
                      ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`net(x, **kwargs)` and the outputs of the modules named in `layers` (`input`: `x`
    itself), read by forward hooks during that one pass. Keyword arguments that are None are
    not passed (a network without a noise input takes no `noise=`)."""
    found = {"input": x}
    handles = [modules[name].register_forward_hook(
        lambda _module, _args, out, name=name: found.__setitem__(name, out))
        for name in layers if name != "input"]
    try:
        # Eager: a --compile'd network does not see hooks added after it was compiled (torch
        # skips guarding on them), so the features would never arrive.
        with torch.compiler.set_stance("force_eager"):
            out = net(x, **{k: v for k, v in kwargs.items() if v is not None})
    finally:
        for handle in handles:
            handle.remove()
    return out, [found[name] for name in layers]
