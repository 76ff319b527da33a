"""Episode records -> per-scenario and overall driving summaries, per policy."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .metrics import JERK_MAX, LAT_ACCEL_MAX, LINE_DEPTH, TTC_OK, WEIGHTS

# summary key -> (metric, how it is aggregated): "rate" = share of episodes where it holds.
SUMMARY = {
    "score": ("score", "mean"),
    "collision_rate": ("collision", "rate"),
    "red_light_rate": ("red_light_violation", "rate"),
    "overshoot_rate": ("stop_overshoot_m", f"rate>{LINE_DEPTH}"),
    "lane_departure_rate": ("lane_departure", "rate"),
    "near_miss_rate": ("min_ttc_s", f"rate<{TTC_OK}"),
    "progress_ratio": ("progress_ratio", "mean"),
    "min_ttc_s": ("min_ttc_s", "mean"),
    "peak_jerk": ("peak_jerk", "mean"),
    "peak_lateral_accel": ("peak_lateral_accel", "mean"),
    "comfortable_share": ("comfortable_share", "mean"),
    "clipped_steps": ("clipped_steps", "mean"),
}


def aggregate(metrics: list[dict]) -> dict:
    """The SUMMARY of a list of episode metrics."""
    out = {"episodes": len(metrics)}
    for key, (name, how) in SUMMARY.items():
        v = np.array([m[name] for m in metrics], float)
        if how.startswith("rate>"):
            v = v > float(how[5:])
        elif how.startswith("rate<"):
            v = v < float(how[5:])
        out[key] = round(float(v.mean()), 4)
    return out


def summarise(records: list[dict], policies) -> dict:
    """{policy: {"overall": ..., "per_scenario": {scenario: ...}}} over episode records
    ({"scenario": ..., policy: metrics, ...}) for each of ``policies`` they hold."""
    out = {}
    for policy in policies:
        by_scenario = defaultdict(list)
        for r in records:
            by_scenario[r["scenario"]].append(r[policy])
        out[policy] = {"overall": aggregate([r[policy] for r in records]),
                       "per_scenario": {s: aggregate(ms) for s, ms in sorted(by_scenario.items())}}
    return out


def score_definition() -> dict:
    """The score's weights and thresholds, as drive.json records them."""
    return {"weights": WEIGHTS, "ttc_ok_s": TTC_OK, "jerk_max": JERK_MAX,
            "lateral_accel_max": LAT_ACCEL_MAX, "stop_line_depth_m": LINE_DEPTH,
            "gates": "collision or red light: x0; lane departure: x0.5; overshoot: x0.5"}


def table(summary: dict) -> str:
    """Per scenario and overall: each policy's score, collisions and red-light violations."""
    policies = list(summary)
    scenarios = list(next(iter(summary.values()))["per_scenario"]) + ["overall"]
    head = f"{'scenario':<17} {'n':>4}  " + "  ".join(f"{p:>22}" for p in policies)
    lines = [head, f"{'':<23}" + "  ".join(f"{'score coll red':>22}" for _ in policies)]
    for s in scenarios:
        rows = [summary[p]["overall"] if s == "overall" else summary[p]["per_scenario"][s]
                for p in policies]
        cells = [f"{r['score']:>10.3f} {r['collision_rate']:>5.2f} {r['red_light_rate']:>5.2f}"
                 for r in rows]
        lines.append(f"{s:<17} {rows[0]['episodes']:>4}  " + "  ".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)
