"""`--stabilize flow`: blend each translated frame with the previous translated frame carried
along the input's optical flow (`data.flow`), so what a model redraws differently from frame to
frame stops flickering while motion stays sharp."""
from __future__ import annotations

import numpy as np

from ..data.flow import FlowTracker, grey

STABILIZERS = ("none", "flow")  # what --stabilize accepts


class FlowStabilizer:
    """`--stabilize flow`: each translated frame blended with the previous *output* frame carried
    along the input frames' motion, so what the model redraws differently from frame to frame
    (texture, colour) stops flickering while moving content stays where the input puts it.

    out_t = new_t + strength * m * (warp(out_{t-1}) - new_t), where m is 1 where the pixel is
    tracked (forward-backward consistent, see `FlowTracker`) and the input itself did not change
    there (|input_t - warp(input_{t-1})| <= `input_change` grey levels), else 0: occluded,
    uncovered and badly tracked pixels take the new frame alone, so motion is not smeared. Since
    out_{t-1} is itself stabilised, the blend is a running average along motion trajectories.
    A static clip gives exactly the frame-by-frame output (zero flow warps exactly). Frames are
    fed in order through `__call__`; `reset()` starts a new clip. Deterministic."""

    def __init__(self, strength: float = 0.5, input_change: float = 12.0,
                 max_side: int | None = 640):
        if not 0 <= strength < 1:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        self.strength, self.input_change = strength, input_change
        self.tracker = FlowTracker(max_side)
        self.reset()

    def reset(self) -> None:
        self.previous_input: np.ndarray | None = None
        self.previous_output: np.ndarray | None = None

    def __call__(self, source: np.ndarray, translated: np.ndarray) -> np.ndarray:
        """`source`: the input frame; `translated`: its frame-by-frame output (uint8 or uint16,
        HxW or HxWxC). Returns the stabilised output, the same shape and type."""
        current = grey(source)
        new = translated.astype(np.float32)
        if self.previous_output is None or self.previous_output.shape != new.shape:
            out = new
        else:
            track = self.tracker.track(self.previous_input, current)
            moved_input = track.warp(self.previous_input.astype(np.float32))
            steady = np.abs(current.astype(np.float32) - moved_input) <= self.input_change
            weight = (self.strength * (track.valid & steady)).astype(np.float32)
            if new.ndim == 3:
                weight = weight[..., None]
            out = new + weight * (track.warp(self.previous_output) - new)
        self.previous_input, self.previous_output = current, out
        if np.issubdtype(translated.dtype, np.integer):
            peak = np.iinfo(translated.dtype).max
            return np.clip(np.rint(out), 0, peak).astype(translated.dtype)
        return out.astype(translated.dtype)


def stabilizer(name: str | None, **options: float) -> FlowStabilizer | None:
    """The stabiliser `--stabilize NAME` names (None for "none")."""
    if name in (None, "none"):
        return None
    if name == "flow":
        return FlowStabilizer(**options)
    raise ValueError(f"unknown stabilizer '{name}'; choose one of: {', '.join(STABILIZERS)}")
