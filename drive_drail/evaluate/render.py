"""Rendered frames and animated GIFs of evaluated episodes, for the report.

An episode is reproducible from (scenario, split, seed, policy), so a report replays the
episodes it shows with rendering switched on instead of storing frames for every
evaluated episode. Rendering is highway-env's own headless rgb renderer: its viewer
draws offscreen (``offscreen_rendering``) on pygame surfaces, with SDL's ``offscreen``
video driver and no display. (SDL's ``dummy`` driver is not enough: highway-env's viewer
disables itself when it sees ``SDL_VIDEODRIVER=dummy`` and returns black frames.)
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from drive_drail.evaluate.metrics import EpisodeTrace, episode_metrics
from drive_drail.evaluate.policies import PolicySpec, build_policy
from drive_drail.evaluate.rollout import run_trace
from drive_drail.scenario import Scenario


class RenderError(RuntimeError):
    """The simulator of a scenario cannot render headless here."""


def headless_sdl() -> None:
    """Point SDL at its offscreen video driver and a silent audio driver (before pygame starts)."""
    if os.environ.get("SDL_VIDEODRIVER") in (None, "", "dummy"):
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")


@dataclass
class RenderedEpisode:
    """One replayed episode: its frames ``[H, W, 3]`` uint8, its metrics and its trace."""

    frames: list[np.ndarray]
    metrics: dict
    fps: float
    """Playback rate of ``frames`` [frames/s] (real time)."""
    trace: EpisodeTrace


def _rgb_frame(env) -> np.ndarray:
    """The current rgb frame of an adapter, ``[H, W, 3]`` uint8."""
    if "rgb_array" not in getattr(env, "metadata", {}).get("render_modes", ()):
        raise RenderError(f"{type(env).__name__}: no headless renderer")
    return np.asarray(env.render_rgb())


def render_episode(scenario: Scenario, split: str, seed: int, policy: PolicySpec, frame_every: int = 1, max_frames: int = 300,
                   last_only: bool = False) -> RenderedEpisode:
    """Replay one episode with rendering: every ``frame_every``-th policy step, at most ``max_frames`` frames
    (``last_only``: the final frame alone, the moment the episode ended)."""
    from drive_drail.sim import make_env

    headless_sdl()
    env = make_env(scenario, seed=0, split=split)
    frames: list[np.ndarray] = []
    step = [0]

    def grab(env) -> None:
        if step[0] % frame_every == 0 and len(frames) < max_frames:
            frames.append(_rgb_frame(env))
        step[0] += 1

    try:
        trace = run_trace(env, build_policy(policy, scenario), seed, on_step=None if last_only else grab)
        if last_only:  # the env still holds the final state
            frames.append(_rgb_frame(env))
    finally:
        env.close()
    if frames and max(f.max() for f in frames) == 0:
        raise RenderError(f"{scenario.name}: the renderer returned black frames (SDL_VIDEODRIVER={os.environ.get('SDL_VIDEODRIVER')})")
    metrics = episode_metrics(trace, goal_completion=scenario.success.min_route_completion)
    return RenderedEpisode(frames=frames, metrics=metrics, fps=scenario.policy_frequency_hz / frame_every, trace=trace)


def replay_trace(scenario: Scenario, split: str, seed: int, policy: PolicySpec) -> EpisodeTrace:
    """Replay one episode without rendering and return its trace."""
    from drive_drail.sim import make_env

    env = make_env(scenario, seed=0, split=split)
    try:
        return run_trace(env, build_policy(policy, scenario), seed)
    finally:
        env.close()


def encode_png(frame: np.ndarray) -> bytes:
    """One frame as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def encode_gif(frames: list[np.ndarray], fps: float, max_colors: int = 64, hold_last_s: float = 1.0) -> bytes:
    """Frames as an animated, looping GIF (one shared palette; the last frame held ``hold_last_s``)."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to encode")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    # One palette for the whole clip, from a montage of a few frames (no colour flicker).
    picks = images[:: max(1, len(images) // 8)]
    montage = Image.new("RGB", (images[0].width, images[0].height * len(picks)))
    for i, im in enumerate(picks):
        montage.paste(im, (0, i * images[0].height))
    palette = montage.quantize(colors=max_colors, method=Image.Quantize.MEDIANCUT)
    paletted = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    frame_ms = round(1000.0 / fps)
    durations = [frame_ms] * (len(paletted) - 1) + [max(frame_ms, int(hold_last_s * 1000))]
    buf = io.BytesIO()
    paletted[0].save(buf, format="GIF", save_all=True, append_images=paletted[1:], duration=durations, loop=0, optimize=False)
    return buf.getvalue()
