"""Camera images of the built-in world: pinhole projection of the scene's ground quads and 3-D
boxes into the four cameras of the guide, painted far to near with PIL (2x supersampled)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..constants import CAMERAS, FRAME_OFFSETS_US
from .scene import ASPHALT, T0_INDEX, Box, Scene

NEAR = 0.3  # m, near clipping plane
FAR = 160.0  # m, nothing further is drawn
SUPERSAMPLE = 2
SKY = (150, 190, 235)
GRASS = (95, 125, 70)
LIGHT = np.array([0.35, 0.45, 0.82]) / np.linalg.norm([0.35, 0.45, 0.82])


@dataclass(frozen=True)
class Rig:
    """A camera mounted on the ego: position (x fwd, y left, z up, m), yaw (rad), field of view."""

    xyz: tuple[float, float, float]
    yaw: float
    fov_deg: float


RIGS = {
    "camera_cross_left_120fov": Rig((1.8, 0.8, 1.5), np.radians(60.0), 120.0),
    "camera_front_wide_120fov": Rig((1.9, 0.0, 1.5), 0.0, 120.0),
    "camera_cross_right_120fov": Rig((1.8, -0.8, 1.5), np.radians(-60.0), 120.0),
    "camera_front_tele_30fov": Rig((1.9, 0.0, 1.5), 0.0, 30.0),
}
assert tuple(RIGS) == CAMERAS
FRAME_INDICES = [T0_INDEX + off // 100_000 for off in FRAME_OFFSETS_US]  # on the 0.1 s grid


def _shade(color, normal) -> tuple[int, int, int]:
    f = 0.55 + 0.45 * max(0.0, float(normal @ LIGHT))
    return tuple(int(min(255, c * f)) for c in color)


def box_faces(box: Box, t_index: int):
    """World-space faces of a box at a time index: [(corners (4, 3), normal (3,), colour)],
    followed by its decals."""
    x, y, yaw = box.pose(t_index)
    length, width, height = box.size
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    origin = np.array([x, y, box.z])
    hx, hy = length / 2, width / 2
    local = {
        (1, 0, 0): [[hx, -hy, 0], [hx, hy, 0], [hx, hy, height], [hx, -hy, height]],
        (-1, 0, 0): [[-hx, hy, 0], [-hx, -hy, 0], [-hx, -hy, height], [-hx, hy, height]],
        (0, 1, 0): [[hx, hy, 0], [-hx, hy, 0], [-hx, hy, height], [hx, hy, height]],
        (0, -1, 0): [[-hx, -hy, 0], [hx, -hy, 0], [hx, -hy, height], [-hx, -hy, height]],
        (0, 0, 1): [[hx, hy, height], [-hx, hy, height], [-hx, -hy, height], [hx, -hy, height]],
    }
    faces = []
    for normal, corners in local.items():
        n = rot @ np.array(normal, float)
        faces.append((np.asarray(corners) @ rot.T + origin, n, _shade(box.color, n)))
    back = rot @ np.array([-1.0, 0.0, 0.0])
    for corners, color in box.decals:
        faces.append((corners @ rot.T + origin, back, color))
    return faces


def _camera(ego_pose, rig: Rig):
    """World->camera rotation (rows: right, down, forward) and the camera centre."""
    ex, ey, eyaw = ego_pose
    c, s = np.cos(eyaw), np.sin(eyaw)
    centre = np.array([ex + c * rig.xyz[0] - s * rig.xyz[1], ey + s * rig.xyz[0] + c * rig.xyz[1],
                       rig.xyz[2]])
    th = eyaw + rig.yaw
    rot = np.array([[np.sin(th), -np.cos(th), 0.0], [0.0, 0.0, -1.0],
                    [np.cos(th), np.sin(th), 0.0]])
    return rot, centre


def _clip_near(poly: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-space polygon (n, 3) against z >= NEAR."""
    out = []
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        if a[2] >= NEAR:
            out.append(a)
        if (a[2] >= NEAR) != (b[2] >= NEAR):
            t = (NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out)


def project_points(points: np.ndarray, camera: str, size: int):
    """Pixel coordinates (N, 2) of ego-frame points (N, 3) at t0 in ``camera``'s image of
    ``size`` pixels, and which of them lie in front of the camera (N,)."""
    rig = RIGS[camera]
    rot, centre = _camera((0.0, 0.0, 0.0), rig)
    cam = (points - centre) @ rot.T
    focal = (size / 2.0) / np.tan(np.radians(rig.fov_deg) / 2)
    in_front = cam[:, 2] > NEAR
    uv = size / 2.0 + focal * cam[:, :2] / np.maximum(cam[:, 2:3], NEAR)
    return uv, in_front


class View:
    """One camera image being painted: projects camera-space polygons and fills them."""

    def __init__(self, rot, centre, fov_deg: float, size: int):
        self.rot, self.centre = rot, centre
        self.half = size * SUPERSAMPLE / 2.0
        self.tan = np.tan(np.radians(fov_deg) / 2)
        self.focal = self.half / self.tan
        self.image = Image.new("RGB", (size * SUPERSAMPLE,) * 2, SKY)
        self.draw = ImageDraw.Draw(self.image)
        self.draw.rectangle([0, self.half, 2 * self.half, 2 * self.half], fill=GRASS)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (points - self.centre) @ self.rot.T

    def visible(self, cam: np.ndarray) -> np.ndarray:
        """Polygons (P, n, 3) in camera space that may be seen: not all behind the near plane,
        beyond FAR, or beyond one side of the frustum."""
        x, y, z = cam[..., 0], cam[..., 1], cam[..., 2]
        m = 1.05 * self.tan * np.maximum(z, NEAR)
        outside = ((z < NEAR).all(-1) | (z > FAR).all(-1) | (x > m).all(-1) | (-x > m).all(-1)
                   | (y > m).all(-1) | (-y > m).all(-1))
        return ~outside

    def fill(self, cam_poly: np.ndarray, color) -> None:
        if (cam_poly[:, 2] < NEAR).any():
            cam_poly = _clip_near(cam_poly)
            if len(cam_poly) < 3:
                return
        uv = self.half + self.focal * cam_poly[:, :2] / cam_poly[:, 2:3]
        self.draw.polygon([tuple(p) for p in uv.tolist()], fill=color)

    def pixels(self) -> np.ndarray:
        return np.asarray(self.image.reduce(SUPERSAMPLE))


def render_frames(scene: Scene, track, size: int) -> np.ndarray:
    """Frames of the four cameras at t0 - 0.3 s ... t0 as seen from the ego's poses on
    ``track``: uint8 (4 cameras, 4 frames, size, size, 3)."""
    poses = [(track.x[i], track.y[i], track.yaw[i]) for i in FRAME_INDICES]
    return render_views(scene, poses, FRAME_INDICES, size)


def render_views(scene: Scene, poses, t_indices, size: int) -> np.ndarray:
    """The four cameras from ego poses (x, y, yaw) with the scene's agents at time indices
    ``t_indices`` of its grid, one image per (pose, index) pair: uint8 (4 cameras,
    len(poses), size, size, 3)."""
    ground = np.stack([q for q, _ in scene.quads])  # (Q, 4, 3)
    colors = [c for _, c in scene.quads]
    # Asphalt first, markings on top of any road surface.
    order = sorted(range(len(colors)), key=lambda j: colors[j] != ASPHALT)
    ground, colors = ground[order], [colors[j] for j in order]
    out = np.empty((len(RIGS), len(poses), size, size, 3), np.uint8)
    for f, (ego, t_index) in enumerate(zip(poses, t_indices, strict=True)):
        faces = [box_faces(b, t_index) for b in scene.boxes]
        box_centres = [np.mean([corners for corners, _, _ in fs[:5]], axis=(0, 1)) for fs in faces]
        for c, rig in enumerate(RIGS.values()):
            view = View(*_camera(ego, rig), rig.fov_deg, size)
            cam = view.to_camera(ground)
            for j in np.flatnonzero(view.visible(cam)):
                view.fill(cam[j], colors[j])
            dist = [np.linalg.norm(centre - view.centre) for centre in box_centres]
            for b in np.argsort(dist)[::-1]:
                for corners, normal, color in faces[b]:
                    if normal @ (view.centre - corners.mean(0)) <= 0:
                        continue  # facing away
                    cam_face = view.to_camera(corners)
                    if view.visible(cam_face[None])[0]:
                        view.fill(cam_face, color)
            out[c, f] = view.pixels()
    if scene.brightness != 1.0:
        out = np.clip(out * scene.brightness, 0, 255).astype(np.uint8)
    return out
