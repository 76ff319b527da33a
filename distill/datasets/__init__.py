"""Standard benchmarks: nuScenes prediction (raster bird's-eye input) and Argoverse 2 motion
forecasting (vector input), read with their official devkits (the ``bench`` extra).
docs/datasets.md is the user's guide.

    spec = BENCHMARKS["nuscenes"]            # rates, horizon and miss rule of a benchmark
    train = load_benchmark_split(args, "train")   # a dataset of benchmark batches

The devkits are imported only when a benchmark dataset is built, so camera training needs
neither.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..constants import BENCHMARK_INPUT_TYPES
from .vectors import POINT_FEATURES


@dataclass(frozen=True)
class BenchmarkSpec:
    input_type: str  # what the student sees
    history_steps: int  # past poses of the target agent, the last at t0
    horizon: int  # future poses predicted
    dt: float  # seconds between poses
    miss: str  # miss rule of distill.metrics.min_ade_fde_mr


BENCHMARKS = {
    # 2 s of history and 6 s of future at 2 Hz; MissRateTopK: max pointwise error >= 2 m.
    "nuscenes": BenchmarkSpec(BENCHMARK_INPUT_TYPES["nuscenes"], history_steps=5, horizon=12,
                              dt=0.5, miss="max"),
    # 5 s observed and 6 s predicted at 10 Hz; a miss: final error > 2 m.
    "argoverse2": BenchmarkSpec(BENCHMARK_INPUT_TYPES["argoverse2"], history_steps=50,
                                horizon=60, dt=0.1, miss="final"),
}


def benchmark_model_fields(name: str | None) -> dict:
    """ModelConfig fields a benchmark fixes ({} for the guide's own data)."""
    if name is None:
        return {}
    spec = BENCHMARKS[name]
    fields = dict(history_steps=spec.history_steps, horizon=spec.horizon, dt=spec.dt)
    if spec.input_type == "vector":
        fields["polyline_features"] = POINT_FEATURES
    return fields


def miss_rule(name: str | None) -> str:
    """The benchmark's miss rule; the built-in world's data uses Argoverse 2's ("final")."""
    return BENCHMARKS[name].miss if name else "final"


def load_benchmark_split(config, split: str, limit: int = 0):
    """The ``split`` ("train" or "val") dataset of ``config.benchmark`` from its root flag, its
    first ``limit`` samples (0 = all)."""
    if config.benchmark == "nuscenes":
        from .nuscenes import NuScenesPrediction
        return NuScenesPrediction.open(config.nuscenes_root, split, config.resolution, limit)
    from .argoverse2 import Argoverse2Forecasting
    return Argoverse2Forecasting.open(config.argoverse2_root, split, limit)
