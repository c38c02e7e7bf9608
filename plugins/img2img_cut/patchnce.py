"""PatchNCE (Park et al. 2020): a patch of the output should be more like the input patch it came
from than like any other patch of the same input. Features of both images are read from the
generator's own encoder at a few layers, the same random positions are sampled in each, a small
projection head maps each sampled feature to a unit vector, and every output patch must pick its
own input patch out of the layer's sampled patches (a cross-entropy over cosine similarities
divided by a temperature, as in InfoNCE / MoCo)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from img2img.networks import init_weights


def patch_nce_loss(query: Tensor, key: Tensor, temperature: float) -> Tensor:
    """Mean over images b and patches i of `-log softmax_j(q_bi . k_bj / temperature)[i]`.

    `query`, `key`: (B, N, D), row i of both from the same position; the other N - 1 patches of
    the same image are the negatives. Gradients reach the query only: the keys are targets."""
    logits = torch.bmm(query.float(), key.detach().float().transpose(1, 2)) / temperature
    b, n, _ = logits.shape
    target = torch.arange(n, device=logits.device).repeat(b)
    return F.cross_entropy(logits.reshape(b * n, n), target)


class ProjectionHead(nn.Module):
    """One two-layer MLP (Linear, ReLU, Linear, `units` wide) per feature layer, applied to the
    features at `patches` sampled positions and L2-normalised. Positions are drawn once per
    layer and call and shared by the images of a batch; pass the returned `ids` to sample the
    same positions of another image's features."""

    def __init__(self, channels: Mapping[str, int], units: int = 256):
        super().__init__()
        self.mlps = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(c, units), nn.ReLU(), nn.Linear(units, units))
            for name, c in channels.items()})
        init_weights(self)

    def forward(self, features: Sequence[Tensor], patches: int,
                ids: Sequence[Tensor] | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """(B, C, H, W) per layer, in the head's layer order -> (B, min(patches, H*W), units)."""
        out, used = [], []
        for k, (mlp, feat) in enumerate(zip(self.mlps.values(), features)):
            flat = feat.flatten(2).transpose(1, 2)  # (B, H*W, C)
            if ids is None:
                chosen = torch.randperm(flat.shape[1], device=flat.device)[:patches]
            else:
                chosen = ids[k]
            out.append(F.normalize(mlp(flat[:, chosen]), dim=-1))
            used.append(chosen)
        return out, used
