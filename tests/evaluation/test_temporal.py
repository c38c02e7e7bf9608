"""The warping error E_warp (`img2img.evaluation.temporal`, Lai et al. 2018) and the flow tracking
it rests on (`img2img.data.flow`), on frames with known motion."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from img2img.data.flow import FlowTracker, grey
from img2img.evaluation.temporal import pair_error, warping_error


def texture(height: int = 64, width: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture that optical flow can follow."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2)


def panning(n: int = 8, step: int = 2) -> list[np.ndarray]:
    """Frames of a texture moving `step` px a frame to the right (cut from a wider one)."""
    wide = texture(64, 96 + n * step)
    return [np.ascontiguousarray(wide[:, (n - i) * step:(n - i) * step + 96]) for i in range(n)]


def test_the_tracker_finds_a_known_shift():
    frames = panning(2, step=3)
    track = FlowTracker().track(grey(frames[0]), grey(frames[1]))
    xs = np.arange(96, dtype=np.float32)[None, :].repeat(64, 0)
    inner = (slice(8, -8), slice(8, -8))
    assert np.median((track.map_x - xs)[inner]) == pytest.approx(-3, abs=0.1)
    assert track.valid[inner].mean() > 0.9
    assert not track.valid[:, :2].any()  # came from outside the previous frame: untracked


def test_the_tracker_is_deterministic_and_static_frames_do_not_move():
    frame = grey(texture())
    track = FlowTracker().track(frame, frame)
    assert np.array_equal(track.warp(frame), frame) and track.valid.all()
    again = FlowTracker().track(grey(panning()[0]), grey(panning()[1]))
    once = FlowTracker().track(grey(panning()[0]), grey(panning()[1]))
    assert np.array_equal(again.map_x, once.map_x) and np.array_equal(again.valid, once.valid)


def test_a_clip_that_only_moves_has_a_small_warping_error_and_flicker_raises_it():
    frames = panning()
    steady = warping_error(frames, frames)
    rng = np.random.default_rng(1)
    flickering = [np.clip(f.astype(int) + rng.integers(-20, 21), 0, 255).astype(np.uint8)
                  for f in frames]  # each frame brighter or darker as a whole
    assert steady < 1e-3
    assert warping_error(frames, flickering) > 10 * steady


def test_pair_error_is_the_mean_squared_difference_summed_over_channels():
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 51, np.uint8)  # 0.2 in every channel
    track = FlowTracker().track(grey(a), grey(a))  # no motion
    assert pair_error(a, b, track) == pytest.approx(3 * 0.2 ** 2, rel=1e-5)
    track.valid[:] = False
    assert pair_error(a, b, track) is None


def test_a_single_frame_has_no_warping_error():
    frame = texture()
    assert warping_error([frame], [frame]) == 0.0
