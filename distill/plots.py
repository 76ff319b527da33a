"""Figures of an evaluation: trajectories over the front camera, a top-down view and ADE
against horizon; of a closed-loop drive, the per-scenario summary and the top-down animation of
an episode (matplotlib, no display needed; files written atomically)."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from PIL import Image  # noqa: E402

from .closed_loop.metrics import ego_footprints, footprints  # noqa: E402
from .world.render import project_points  # noqa: E402
from .world.scene import ASPHALT  # noqa: E402

FRONT = "camera_front_wide_120fov"
PRED, TEACHER, EGO = "tab:red", "tab:green", "tab:blue"
POLICY_COLORS = {"student": PRED, "planner": TEACHER, "constant-velocity": "tab:gray"}


@contextmanager
def atomic_path(path: Path):
    """A temporary name next to ``path`` (same suffix) to write to; renamed to ``path`` after,
    so a reader never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # a plain file's mode, not mkstemp's 0600
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return Path(path)


def _teacher(gt_xy, pred_xy):
    """The teacher's trajectory per sample, or None per sample when there are none
    (``distill.infer`` without labels)."""
    return [None] * len(pred_xy) if gt_xy is None else gt_xy


def front_camera(images: list[np.ndarray], pred_xy, gt_xy, titles, path: Path) -> Path:
    """Each sample's front-wide frame at t0 (H, W, 3) with predicted and teacher trajectories
    projected by the built-in world's pinhole model of that camera (approximate for real
    footage, whose lenses differ)."""
    return _save(front_camera_figure(images, pred_xy, gt_xy, titles), path)


def front_camera_figure(images: list[np.ndarray], pred_xy, gt_xy, titles):
    """``front_camera``'s figure, unsaved (TensorBoard's ``add_figure`` closes it)."""
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6), squeeze=False)
    for ax, img, p, g, title in zip(axes[0], images, pred_xy, _teacher(gt_xy, pred_xy), titles):
        ax.imshow(img)
        for xy, color, label in ((g, TEACHER, "teacher"), (p, PRED, "student")):
            if xy is None:
                continue
            pts = np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)
            uv, ok = project_points(pts, FRONT, img.shape[0])
            ax.plot(uv[ok, 0], uv[ok, 1], ".-", color=color, ms=2, lw=1, label=label)
        ax.set_xlim(0, img.shape[1])
        ax.set_ylim(img.shape[0], 0)
        ax.set_title(title, fontsize=7)
        ax.axis("off")
    axes[0, 0].legend(loc="upper left", fontsize=6)
    fig.tight_layout()
    return fig


def top_down(pred_xy, gt_xy, titles, path: Path) -> Path:
    """Predicted and teacher trajectories seen from above (x forward is up, y left is left)."""
    return _save(top_down_figure(pred_xy, gt_xy, titles), path)


def top_down_figure(pred_xy, gt_xy, titles):
    """``top_down``'s figure, unsaved."""
    fig, axes = plt.subplots(1, len(pred_xy), figsize=(2.6 * len(pred_xy), 3.6), squeeze=False)
    for ax, p, g, title in zip(axes[0], pred_xy, _teacher(gt_xy, pred_xy), titles):
        if g is not None:
            ax.plot(-g[:, 1], g[:, 0], ".-", color=TEACHER, ms=2, lw=1, label="teacher")
        ax.plot(-p[:, 1], p[:, 0], ".-", color=PRED, ms=2, lw=1, label="student")
        ax.plot([0], [0], "k^", ms=5)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(title, fontsize=7)
        ax.set_xlabel("left <- y (m)", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0, 0].set_ylabel("x forward (m)", fontsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def ade_by_horizon(errors: np.ndarray, cv_errors: np.ndarray, dt: float, path: Path) -> Path:
    """Mean displacement error at each future step (N, T) for the student and for the
    constant-velocity baseline."""
    t = dt * np.arange(1, errors.shape[1] + 1)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(t, errors.mean(0), color=PRED, label="student")
    ax.plot(t, cv_errors.mean(0), color="gray", ls="--", label="constant velocity")
    ax.set_xlabel("horizon (s)")
    ax.set_ylabel("mean displacement error (m)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def drive_summary(summary: dict, path: Path) -> Path:
    """Per scenario and overall, each policy's mean driving score and its share of episodes
    with a collision or a red-light violation (``closed_loop.summary.summarise``'s dict)."""
    policies = list(summary)
    scenarios = list(summary[policies[0]]["per_scenario"]) + ["overall"]

    def row(policy, key):
        s = summary[policy]
        return [(s["overall"] if n == "overall" else s["per_scenario"][n])[key] for n in scenarios]

    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 0.7 * len(scenarios)), 6), sharex=True)
    x, width = np.arange(len(scenarios)), 0.8 / len(policies)
    for j, policy in enumerate(policies):
        color = POLICY_COLORS.get(policy, f"C{j}")
        offset = (j - (len(policies) - 1) / 2) * width
        axes[0].bar(x + offset, row(policy, "score"), width, color=color, label=policy)
        fail = np.maximum(row(policy, "collision_rate"), row(policy, "red_light_rate"))
        axes[1].bar(x + offset, fail, width, color=color)
    axes[0].set_ylabel("driving score")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=7, ncol=len(policies))
    axes[1].set_ylabel("collision or red light\n(share of episodes)")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_xticks(x, scenarios, rotation=45, ha="right", fontsize=7)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _scene_layers(ax, scene, t_index: int):
    """The ground quads and the static boxes of ``scene`` (drawn once), and the collection
    of its moving vehicles and pedestrians (updated per frame)."""
    quads = sorted(scene.quads, key=lambda q: q[1] != ASPHALT)  # markings over the asphalt
    ax.add_collection(PolyCollection([q[:, :2] for q, _ in quads], edgecolors="none",
                                     facecolors=[np.array(c) / 255 for _, c in quads]))
    static = [b for b in scene.boxes if b.kind not in ("vehicle", "pedestrian")]
    ax.add_collection(PolyCollection(
        [footprints(*np.array(b.pose(t_index)), b.size[0] / 2, b.size[0] / 2, b.size[1])
         for b in static], facecolors=[np.array(b.color) / 255 for b in static]))
    movers = [b for b in scene.boxes if b.kind in ("vehicle", "pedestrian")]
    agents = PolyCollection([], facecolors=[np.array(b.color) / 255 for b in movers],
                            edgecolors="k", linewidths=0.5)
    ax.add_collection(agents)
    return movers, agents


def drive_animation(scene, teacher, rollout, title: str, path: Path) -> Path:
    """Top-down GIF of an episode, one frame per 0.1 s step, following the ego (blue box,
    60 m across): the agents, the plan in force (blue line), the teacher's drive (green) and
    the road."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=80)
    ax.set_facecolor((95 / 255, 125 / 255, 70 / 255))
    ax.set(xticks=[], yticks=[], aspect="equal")
    start = rollout.plan_steps[0]
    movers, agents = _scene_layers(ax, scene, start)
    states = rollout.states()
    ax.plot(teacher.x[start:start + len(states)], teacher.y[start:start + len(states)], "-",
            color=TEACHER, lw=1)
    ego = PolyCollection([], facecolors=EGO, edgecolors="k", linewidths=0.8)
    ax.add_collection(ego)
    (plan_line,) = ax.plot([], [], ".-", color=EGO, ms=1.5, lw=1)
    corners, images = ego_footprints(states), []
    for n, (x, y, yaw, v) in enumerate(states):
        i = start + n
        agents.set_verts([footprints(*np.array(b.pose(i)), b.size[0] / 2, b.size[0] / 2,
                                     b.size[1]) for b in movers])
        ego.set_verts([corners[n]])
        plan_line.set_data(*rollout.plans_xy[np.searchsorted(rollout.plan_steps, i, "right") - 1].T)
        cx, cy = x + 12 * np.cos(yaw), y + 12 * np.sin(yaw)
        ax.set(xlim=(cx - 30, cx + 30), ylim=(cy - 30, cy + 30))
        ax.set_title(f"{title}\nt0 + {n / 10:.1f} s, {v:.1f} m/s", fontsize=7)
        fig.canvas.draw()
        images.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]))
    plt.close(fig)
    with atomic_path(path) as tmp:
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=100, loop=0)
    return Path(path)
