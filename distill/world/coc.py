"""Chain-of-causation sentences of the world's teacher: the decision, its cause and the
specifics, in the style "Decelerate to stop at the line 18 m ahead: the traffic light is red."
"""
from __future__ import annotations

import numpy as np

from .planner import EgoTrack
from .scene import EGO_FRONT, FUTURE_INDICES, T0_INDEX, VEHICLE_SIZE, Scene

STOPPED = 0.3  # m/s


def sentence(scene: Scene, track: EgoTrack) -> str:
    s0, v0 = track.s[T0_INDEX], track.v[T0_INDEX]
    future_v = track.v[FUTURE_INDICES]
    v_min = float(future_v.min())
    f = scene.facts
    d = f.get("cause_s", s0) - s0 - EGO_FRONT  # metres from the ego's front to the cause
    b = scene.behaviour
    if b == "cruise":
        if abs(future_v[-1] - v0) < 1.0:
            return f"Keep the lane at {v0:.0f} m/s: the road ahead is clear."
        return f"Adjust speed to {future_v[-1]:.0f} m/s and keep the lane: the road ahead is clear."
    if b == "curve":
        where = f"the {f['direction']} curve {d:.0f} m ahead" if d > 1 else f"the {f['direction']} curve"
        if v_min < v0 - 0.5:
            return f"Slow to {v_min:.0f} m/s for {where}: the road bends with a {f['radius']:.0f} m radius."
        return f"Follow {where} at {v0:.0f} m/s: the bend is gentle."
    if b in ("follow_lead", "stop_for_lead"):
        gap = scene.lead.s[T0_INDEX] - VEHICLE_SIZE[0] / 2 - (s0 + EGO_FRONT)
        if b == "follow_lead":
            return f"Decelerate to keep a safe gap: the lead vehicle {gap:.0f} m ahead is braking."
        if v0 < STOPPED:
            return f"Remain stopped behind the stopped vehicle {gap:.0f} m ahead."
        return f"Decelerate to stop behind the stopped vehicle {gap:.0f} m ahead."
    if b == "red_light":
        if v0 < STOPPED:
            return "Remain stopped at the line: the traffic light is red."
        return f"Decelerate to stop at the line {d:.0f} m ahead: the traffic light is red."
    if b == "green_light":
        return (f"Proceed through the intersection {d:.0f} m ahead at {v0:.0f} m/s: "
                "the traffic light is green.")
    if b == "pedestrian":
        cause = f"a pedestrian is crossing from the {f['side']}."
        if v_min < STOPPED:
            return f"Stop before the crosswalk {d:.0f} m ahead: {cause}"
        return f"Slow to {v_min:.0f} m/s before the crosswalk {d:.0f} m ahead: {cause}"
    if b == "speed_limit_down":
        return (f"Decelerate to {f['limit_kmh']} km/h: the speed limit sign {d:.0f} m ahead "
                f"shows {f['limit_kmh']}.")
    if b == "speed_limit_up":
        return f"Accelerate to {f['limit_kmh']} km/h after the speed limit sign {d:.0f} m ahead."
    if b in ("turn_left", "turn_right"):
        side = b.split("_")[1]
        return (f"Slow to {v_min:.0f} m/s and turn {side} at the intersection {d:.0f} m ahead: "
                f"the route goes {side}.")
    if b == "go_straight":
        return (f"Continue straight through the intersection {d:.0f} m ahead at "
                f"{float(np.median(future_v)):.0f} m/s: the route goes straight.")
    raise ValueError(f"no sentence for behaviour {b!r}")
