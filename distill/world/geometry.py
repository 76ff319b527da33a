"""Planar paths of the built-in world: lane centrelines and road edges as arc-length-sampled
polylines with heading and curvature, built from constant-curvature segments."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Path:
    """A polyline sampled every ``ds`` metres of arc length.

    s (M,), xy (M, 2), heading (M,) radians, curvature (M,) 1/m.
    """

    s: np.ndarray
    xy: np.ndarray
    heading: np.ndarray
    curvature: np.ndarray

    @staticmethod
    def from_segments(segments, start_xy=(0.0, 0.0), start_heading=0.0, s_start=0.0,
                      ds=0.25) -> "Path":
        """Integrate [(length m, curvature 1/m), ...] from a start pose at arc length s_start."""
        ks = np.concatenate([np.full(max(int(round(length / ds)), 1), k) for length, k in segments])
        heading = start_heading + np.concatenate([[0.0], np.cumsum(ks * ds)])
        # Midpoint heading per step: exact for arcs to second order, cheap, and stable.
        mid = 0.5 * (heading[1:] + heading[:-1])
        steps = ds * np.stack([np.cos(mid), np.sin(mid)], axis=1)
        xy = np.asarray(start_xy, float) + np.concatenate([[[0.0, 0.0]], np.cumsum(steps, 0)])
        curvature = np.concatenate([ks, ks[-1:]])
        s = s_start + ds * np.arange(len(heading))
        return Path(s, xy, heading, curvature)

    @staticmethod
    def straight(start_xy, heading, s_start, s_end, ds=0.25) -> "Path":
        length = s_end - s_start
        start = np.asarray(start_xy, float) + s_start * np.array([np.cos(heading), np.sin(heading)])
        return Path.from_segments([(length, 0.0)], start, heading, s_start, ds)

    @property
    def ds(self) -> float:
        return float(self.s[1] - self.s[0])

    def _index(self, s):
        f = np.clip((np.asarray(s, float) - self.s[0]) / self.ds, 0, len(self.s) - 1.000001)
        i = np.floor(f).astype(int)
        return i, f - i

    def pose_at(self, s):
        """(x, y, heading) at arc length(s) s, linearly interpolated (clamped at the ends)."""
        i, w = self._index(s)
        xy = self.xy[i] * (1 - w)[..., None] + self.xy[i + 1] * w[..., None]
        heading = self.heading[i] * (1 - w) + self.heading[i + 1] * w
        return xy[..., 0], xy[..., 1], heading

    def curvature_at(self, s):
        i, _ = self._index(s)
        return self.curvature[i]

    def offset(self, s, lateral):
        """Points at arc length s shifted ``lateral`` metres to the left of the path: (..., 2)."""
        x, y, h = self.pose_at(s)
        return np.stack([x - lateral * np.sin(h), y + lateral * np.cos(h)], axis=-1)

    def project(self, x: float, y: float, s_hint: float, window: float = 15.0) -> float:
        """Arc length of the path point nearest (x, y), searched within s_hint +- window."""
        lo = np.searchsorted(self.s, s_hint - window)
        hi = np.searchsorted(self.s, s_hint + window) + 1
        d2 = (self.xy[lo:hi, 0] - x) ** 2 + (self.xy[lo:hi, 1] - y) ** 2
        return float(self.s[lo + int(np.argmin(d2))])

    @property
    def s_end(self) -> float:
        return float(self.s[-1])


def wrap_angle(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi
