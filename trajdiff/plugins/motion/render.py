"""Stick-figure pictures of motions: an animated GIF, an MP4 video (H.264 through imageio-ffmpeg), or a PNG strip
of frames (matplotlib, Agg).

Motions are joint positions ``[T, J, 3]`` (Y up); the camera is orthographic, turned by ``azimuth`` about
the vertical and tilted down by ``elevation`` degrees, and frames the whole motion so that root motion shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trajdiff.errors import ConfigError

__all__ = ["project", "render_gif", "render_strip", "render_video"]

COLORS = ("black", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")


def project(points: np.ndarray, azimuth: float = 30.0, elevation: float = 15.0) -> np.ndarray:
    """Orthographic screen coordinates ``[..., 2]`` of points ``[..., 3]``."""
    a, e = np.deg2rad(azimuth), np.deg2rad(elevation)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    sx = np.cos(a) * x - np.sin(a) * z
    depth = np.sin(a) * x + np.cos(a) * z
    sy = np.cos(e) * y - np.sin(e) * depth
    return np.stack([sx, sy], axis=-1)


def _bounds(screens: list[np.ndarray]) -> tuple[float, float, float, float]:
    allp = np.concatenate([s.reshape(-1, 2) for s in screens])
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    pad = 0.1 * max(float((hi - lo).max()), 0.5)
    return lo[0] - pad, hi[0] + pad, lo[1] - pad, hi[1] + pad


def _check(motions: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for m in motions:
        m = np.asarray(m, float)
        if m.ndim == 2:
            m = m.reshape(len(m), -1, 3)
        if m.ndim != 3 or m.shape[-1] != 3:
            raise ConfigError(f"a motion to draw must be [T, J, 3] or [T, 3 J], got {m.shape}")
        out.append(m)
    if not out:
        raise ConfigError("nothing to draw: no motions given")
    return out


def _figure(width: float, height: float):  # noqa: ANN202
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(figure)
    return figure


def _animation(motions: Sequence[np.ndarray], parents: Sequence[int], fps: float, labels: Sequence[str] | None,
               history: int, azimuth: float, max_frames: int) -> list[np.ndarray]:
    """RGB frames ``[H, W, 3]`` of the motions overlaid (frames before ``history`` grey)."""
    motions = _check(motions)
    screens = [project(m, azimuth) for m in motions]
    x0, x1, y0, y1 = _bounds(screens)
    frames = min(max(len(m) for m in motions), max_frames)
    fig = _figure(5.0, 5.0 * (y1 - y0) / max(x1 - x0, 1e-6) if x1 > x0 else 5.0)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.axis("off")
    bones = [(j, p) for j, p in enumerate(parents) if p >= 0]
    lines = [[ax.plot([], [], color=COLORS[i % len(COLORS)], lw=2)[0] for _ in bones] for i in range(len(motions))]
    title = ax.text(0.02, 0.97, "", transform=ax.transAxes, va="top", fontsize=9)
    images = []
    for t in range(frames):
        for i, s in enumerate(screens):
            f = min(t, len(s) - 1)
            color = "0.5" if t < history else COLORS[i % len(COLORS)]
            for line, (j, p) in zip(lines[i], bones, strict=True):
                line.set_data([s[f, p, 0], s[f, j, 0]], [s[f, p, 1], s[f, j, 1]])
                line.set_color(color)
        name = ", ".join(labels) if labels else ""
        title.set_text(f"{t / fps:5.2f} s  {'history' if t < history else name}")
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    return images


def _imageio(what: str):  # noqa: ANN202
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ConfigError(f"the motion domain needs imageio to write {what}: pip install 'trajdiff[motion]'") from None
    return imageio


def render_gif(path: str | Path, motions: Sequence[np.ndarray], parents: Sequence[int], fps: float,
               labels: Sequence[str] | None = None, history: int = 0, azimuth: float = 30.0,
               max_frames: int = 600) -> Path:
    """An animated GIF of one or several motions (overlaid, one colour each; frames before ``history`` drawn
    grey). Motions of different lengths stop at their last frame."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ConfigError(f"cannot write {path}: animations are written as .gif or .mp4")
    imageio = _imageio("GIFs")
    images = _animation(motions, parents, fps, labels, history, azimuth, max_frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, images, duration=1.0 / fps, loop=0)
    return path


def render_video(path: str | Path, motions: Sequence[np.ndarray], parents: Sequence[int], fps: float,
                 labels: Sequence[str] | None = None, history: int = 0, azimuth: float = 30.0,
                 max_frames: int = 18_000) -> Path:
    """An MP4 video (H.264, yuv420p: plays in browsers and players) of the motions, drawn as `render_gif` draws
    them; a video holds long streams in a fraction of a GIF's size."""
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ConfigError(f"cannot write {path}: videos are written as .mp4")
    imageio = _imageio("MP4 videos")
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise ConfigError("writing .mp4 needs imageio-ffmpeg (it brings its own ffmpeg): pip install "
                          "imageio-ffmpeg") from None
    images = _animation(motions, parents, fps, labels, history, azimuth, max_frames)
    height, width = images[0].shape[:2]
    pad = ((0, height % 2), (0, width % 2), (0, 0))  # H.264 in yuv420p needs even sides
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                            macro_block_size=1, quality=7) as writer:
        for image in images:
            writer.append_data(np.pad(image, pad, mode="edge"))
    return path


def render_strip(path: str | Path, motions: Sequence[np.ndarray], parents: Sequence[int], fps: float,
                 labels: Sequence[str] | None = None, panels: int = 8, history: int = 0,
                 azimuth: float = 30.0) -> Path:
    """A PNG: one row per motion, ``panels`` evenly spaced frames per row, each with its time."""
    motions = _check(motions)
    # each panel is centred on the root's ground point, so the body fills it whatever the root motion
    centred = [m - m[:, :1, :] * np.array([1.0, 0.0, 1.0]) for m in motions]
    screens = [project(m, azimuth) for m in centred]
    _, _, y0, y1 = _bounds(screens)
    fig = _figure(1.6 * panels, 2.2 * len(motions))
    axes = fig.subplots(len(motions), panels, squeeze=False)
    bones = [(j, p) for j, p in enumerate(parents) if p >= 0]
    for i, s in enumerate(screens):
        picks = np.linspace(0, len(s) - 1, panels).round().astype(int)
        for n, f in enumerate(picks):
            ax = axes[i, n]
            centre = 0.0
            color = "0.5" if f < history else COLORS[(i + 1) % len(COLORS)]
            for j, p in bones:
                ax.plot([s[f, p, 0] - centre, s[f, j, 0] - centre], [s[f, p, 1], s[f, j, 1]], color=color, lw=1.5)
            ax.axhline(project(np.zeros(3), azimuth)[1], color="0.8", lw=0.8)
            ax.set_xlim(-0.5 * (y1 - y0), 0.5 * (y1 - y0))
            ax.set_ylim(y0, y1)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{f / fps:.2f} s", fontsize=8)
        if labels:
            axes[i, 0].set_ylabel(labels[i], fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
