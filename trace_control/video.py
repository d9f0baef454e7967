"""Videos of a controller's behaviour: mp4 (or gif), headless, with captions.

Several episodes are laid out one after another (``layout="sequence"``) or side by
side (``layout="grid"``). Rendering uses EGL when there is no display and turns off
multisampling, shadows and reflections, which leaves the physics untouched.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trace_control.envs import ensure_headless_rendering
from trace_control.policies import ControllerCode, make_policy
from trace_control.rollout import Episode, run_episode
from trace_control.sandbox.jail import JailLimits

# the raw frames one video keeps, all its episodes together: an episode longer than its share
# (a long horizon, perhaps a run folder's) is shown up to there, and memory stays bounded
MAX_FRAME_BYTES = 512 << 20


class _Frames(list):
    """Frames up to a count; the rest are dropped and ``cut`` says so."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most, self.cut = most, False

    def add(self, frame: np.ndarray) -> None:
        if len(self) < self.most:
            self.append(frame)
        else:
            self.cut = True


def caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with ``text`` on a dark band at the top."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    band = 14 * (text.count("\n") + 1) + 6
    draw.rectangle([0, 0, image.width, band], fill=(0, 0, 0))
    draw.multiline_text((5, 3), text, fill=(255, 255, 255), spacing=2)
    return np.asarray(image)


@dataclass
class Recording:
    """A written video: where, how many frames, and the episodes it shows."""

    path: Path
    frames: int
    episodes: list[Episode]


def record_episodes(code: ControllerCode, task: str, seeds: Sequence[int], env_kwargs: dict | None = None,
                    width: int = 320, height: int = 320, jailed: bool = True,
                    limits: JailLimits | None = None) -> list[tuple[list[np.ndarray], str, Episode]]:
    """Frames of one episode per seed, each with its caption and its episode.

    The simulator renders here; the controller runs where its policy runs (a jail by default).
    """
    from trace_control import envs

    ensure_headless_rendering()
    env = envs.make(task, render_mode="rgb_array", width=width, height=height, **(env_kwargs or {}))
    policy = make_policy(jailed, limits)
    recorded = []
    most = max(1, MAX_FRAME_BYTES // (max(1, len(seeds)) * width * height * 3))
    try:
        policy.load(code)
        for seed in seeds:
            frames = _Frames(most)
            try:
                env.get_wrapper_attr("frame_hook")
                env.set_wrapper_attr("frame_hook", frames.add)
            except AttributeError:
                pass
            episode = run_episode(env, policy, seed=seed, on_frame=frames.add)
            outcome = "success" if episode.success else ("error" if episode.error else "failure")
            text = f"{task}  seed {seed}\n{outcome}, return {episode.episode_return:.2f}, {episode.length} steps"
            if frames.cut:
                text += f" (the first {most} frames)"
            recorded.append((list(frames), text, episode))
    finally:
        policy.close()
        env.close()
    return recorded


def compose(recorded: list[tuple[list[np.ndarray], str, Episode]], layout: str = "sequence",
            hold_frames: int = 10) -> list[np.ndarray]:
    """Caption every frame and lay the episodes out in time or in a grid."""
    episodes = []
    for frames, text, _ in recorded:
        captioned = [caption(frame, text) for frame in frames]
        captioned += [captioned[-1]] * hold_frames  # pause on the outcome
        episodes.append(captioned)
    if layout == "sequence":
        return [frame for episode in episodes for frame in episode]
    if layout != "grid":
        raise ValueError("layout must be 'sequence' or 'grid'")
    length = max(len(e) for e in episodes)
    columns = math.ceil(math.sqrt(len(episodes)))
    rows = math.ceil(len(episodes) / columns)
    blank = np.zeros_like(episodes[0][0])
    padded = [e + [e[-1]] * (length - len(e)) for e in episodes]
    padded += [[blank] * length] * (rows * columns - len(padded))
    frames = []
    for t in range(length):
        grid_rows = [np.concatenate([padded[r * columns + c][t] for c in range(columns)], axis=1)
                     for r in range(rows)]
        frames.append(np.concatenate(grid_rows, axis=0))
    return frames


def write_video(frames: list[np.ndarray], path: str | Path, fps: int = 20) -> Path:
    """Write frames to ``path``: mp4 via ffmpeg, or an animated gif for ``.gif``; never an empty file."""
    import imageio.v2 as imageio

    path = Path(path)
    if not frames:
        raise ValueError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)  # a new file of our own: never a link someone left there
    partial = Path(name)
    try:
        if path.suffix.lower() == ".gif":
            imageio.mimsave(partial, frames, duration=1000 / fps, loop=0)
        else:
            with imageio.get_writer(partial, fps=fps, codec="libx264", quality=7, macro_block_size=16) as writer:
                for frame in frames:
                    writer.append_data(frame)
        if partial.stat().st_size == 0:
            raise ValueError(f"the video writer produced an empty file for {path}")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def record_video(code: ControllerCode, task: str, out: str | Path, seeds: Sequence[int] = (0,),
                 layout: str = "sequence", fps: int = 20, env_kwargs: dict | None = None, width: int = 320,
                 height: int = 320, jailed: bool = True, limits: JailLimits | None = None) -> Recording:
    """Record one episode per seed of the controller on ``task`` to ``out`` (mp4 or gif)."""
    recorded = record_episodes(code, task, seeds, env_kwargs, width, height, jailed, limits)
    frames = compose(recorded, layout)
    path = write_video(frames, out, fps)
    return Recording(path, len(frames), [episode for _, _, episode in recorded])
