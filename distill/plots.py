"""PNG figures of an evaluation: trajectories over the front camera, a top-down view and ADE
against horizon (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .world.render import project_points  # noqa: E402

FRONT = "camera_front_wide_120fov"
PRED, TEACHER = "tab:red", "tab:green"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def front_camera(images: list[np.ndarray], pred_xy, gt_xy, titles, path: Path) -> Path:
    """Each sample's front-wide frame at t0 (H, W, 3) with predicted and teacher trajectories
    projected by the built-in world's pinhole model of that camera (approximate for real
    footage, whose lenses differ)."""
    return _save(front_camera_figure(images, pred_xy, gt_xy, titles), path)


def front_camera_figure(images: list[np.ndarray], pred_xy, gt_xy, titles):
    """``front_camera``'s figure, unsaved (TensorBoard's ``add_figure`` closes it)."""
    fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.6), squeeze=False)
    for ax, img, p, g, title in zip(axes[0], images, pred_xy, gt_xy, titles):
        ax.imshow(img)
        for xy, color, label in ((g, TEACHER, "teacher"), (p, PRED, "student")):
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
    for ax, p, g, title in zip(axes[0], pred_xy, gt_xy, titles):
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
