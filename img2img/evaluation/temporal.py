"""Temporal stability of translated video: the warping error E_warp of Lai et al. (ECCV 2018,
"Learning Blind Video Temporal Consistency"). For each pair of consecutive frames, the previous
output frame is warped onto the current one with the optical flow of the *input* frames, and
the squared difference (summed over the RGB channels, intensities in [0, 1]) is averaged over
the pixels the flow tracks (forward-backward consistent, inside the frame: occluded pixels are
left out); E_warp is the mean over the pairs. Lower is steadier; the input clip's own E_warp
(flow errors, interpolation, lighting) is the floor a translation can reach. Lai et al. used
FlowNet2; here the flow is OpenCV's DIS (`data.flow`), so compare figures measured here with
each other rather than with the paper's."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..data.flow import FlowTracker, Track, grey


def unit(image: np.ndarray) -> np.ndarray:
    """An HxWxC (or HxW) uint8/uint16/float frame as float32 in [0, 1], HxWxC."""
    if image.dtype == np.uint8:
        out = image.astype(np.float32) / 255
    elif image.dtype == np.uint16:
        out = image.astype(np.float32) / 65535
    else:
        out = np.clip(image.astype(np.float32), 0, 1)
    return out[..., None] if out.ndim == 2 else out


def pair_error(previous: np.ndarray, current: np.ndarray, track: Track) -> float | None:
    """One pair's warping error: `previous` warped onto `current` along `track`, squared
    difference summed over channels, averaged over the tracked pixels (None: none tracked)."""
    valid = track.valid
    if not valid.any():
        return None
    warped = track.warp(unit(previous))
    squared = ((unit(current) - warped.reshape(unit(current).shape)) ** 2).sum(-1)
    return float(squared[valid].mean())


class WarpingError:
    """E_warp accumulated frame by frame, so a clip of any length streams through it:
    `update(output, track)` with each output frame and the `Track` from the previous *input*
    frame to this one (None for the first frame); `value` is E_warp so far."""

    def __init__(self) -> None:
        self.previous: np.ndarray | None = None
        self.errors: list[float] = []

    def update(self, output: np.ndarray, track: Track | None) -> None:
        if self.previous is not None and track is not None:
            error = pair_error(self.previous, output, track)
            if error is not None:
                self.errors.append(error)
        self.previous = output

    @property
    def value(self) -> float:
        return float(np.mean(self.errors)) if self.errors else 0.0


def warping_error(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray],
                  tracker: FlowTracker | None = None) -> float:
    """E_warp of the `outputs` clip, with the flow of the `inputs` clip (the same frame count;
    HxWxC RGB frames). `warping_error(frames, frames)` is the input's own E_warp."""
    tracker = tracker or FlowTracker()
    measure = WarpingError()
    previous = None
    for source, output in zip(inputs, outputs, strict=True):
        current = grey(source)
        track = tracker.track(previous, current) if previous is not None else None
        measure.update(output, track)
        previous = current
    return measure.value
