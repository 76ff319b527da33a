"""The benchmark datasets on tiny datasets made with the devkits' own structures (an av2
scenario written by av2's serializer + a static map JSON; a nuScenes table set + map expansion):
trajectories against the devkits' own readers, the vector and raster inputs and the one-line
refusals (one training epoch on each, then evaluation and submission: test_submission.py)."""
from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest
import torch
from packaging.requirements import Requirement

from distill.datasets import BENCHMARKS, benchmark_model_fields, miss_rule
from distill.datasets.vectors import KINDS, MAX_AGENTS, MAX_LANES, POSITION_SCALE
from distill.ops import IMAGENET_MEAN, IMAGENET_STD
from distill.train import main as train_main

av2_serialization = pytest.importorskip("av2.datasets.motion_forecasting.scenario_serialization")
pytest.importorskip("nuscenes")

from distill.datasets.argoverse2 import Argoverse2Forecasting  # noqa: E402
from distill.datasets.nuscenes import NuScenesPrediction  # noqa: E402


@pytest.fixture(scope="module")
def argoverse2_root(tiny_root):
    return tiny_root / "argoverse2"


@pytest.fixture(scope="module")
def nuscenes_root(tiny_root):
    return tiny_root / "nuscenes"


def test_the_bench_extra_pins_are_what_is_installed_and_import_together():
    """The `bench` extra's pins hold in this environment, and the whole stack imports in one
    process (pyarrow >= 21 refuses numpy 1.x; av2 and nuscenes-devkit bring two cv2 wheels)."""
    pins = [Requirement(r) for r in metadata.requires("distill") if 'extra == "bench"' in r]
    assert {p.name for p in pins} >= {"av2", "nuscenes-devkit", "pyarrow"}
    for pin in pins:
        assert pin.specifier.contains(metadata.version(pin.name)), (pin, metadata.version(pin.name))
    import cv2
    import pyarrow
    from nuscenes.prediction.input_representation import static_layers  # noqa: F401
    assert pyarrow.array(np.arange(3)).to_numpy().tolist() == [0, 1, 2]
    assert cv2.__version__ == metadata.version("opencv-python").rsplit(".", 1)[0] \
        == metadata.version("opencv-python-headless").rsplit(".", 1)[0]


def test_benchmark_specs_set_the_model_and_the_miss_rule():
    assert benchmark_model_fields("nuscenes") == {"history_steps": 5, "horizon": 12, "dt": 0.5}
    av2 = benchmark_model_fields("argoverse2")
    assert (av2["history_steps"], av2["horizon"], av2["dt"]) == (50, 60, 0.1)
    assert av2["polyline_features"] == 6 + len(KINDS)
    assert benchmark_model_fields(None) == {}
    assert (miss_rule("nuscenes"), miss_rule("argoverse2"), miss_rule(None)) == \
        ("max", "final", "final")
    assert set(BENCHMARKS) == {"nuscenes", "argoverse2"}


def test_argoverse2_focal_trajectory_matches_the_scenario(argoverse2_root):
    ds = Argoverse2Forecasting.open(argoverse2_root, "train")
    assert len(ds) == 8 and len(Argoverse2Forecasting.open(argoverse2_root, "val")) == 4
    folder = ds.folders[3]
    scenario = av2_serialization.load_argoverse_scenario_parquet(
        folder / f"scenario_{folder.name}.parquet")
    focal = next(t for t in scenario.tracks if t.track_id == scenario.focal_track_id)
    world = np.array([s.position for s in focal.object_states])  # (110, 2)
    yaw0 = focal.object_states[49].heading
    rot = np.array([[np.cos(yaw0), -np.sin(yaw0)], [np.sin(yaw0), np.cos(yaw0)]])
    item = ds[3]
    assert item["clip_id"] == scenario.scenario_id
    assert int(item["t0_us"]) == scenario.timestamps_ns[49] // 1000
    ours = torch.cat([item["ego_history_xyz"], item["trajectory_xyz"]])[:, :2].double().numpy()
    np.testing.assert_allclose(ours @ rot.T + world[49], world, atol=1e-3)
    assert item["trajectory_xyz"].shape == (60, 3) and item["ego_history_xyz"].shape == (50, 3)
    assert torch.allclose(item["ego_history_rot"][-1], torch.eye(3), atol=1e-6)


def test_argoverse2_index_is_cached_and_the_parallel_index_agrees(argoverse2_root, monkeypatch):
    from distill.datasets import argoverse2
    serial = Argoverse2Forecasting.open(argoverse2_root, "val")
    (cache,) = (argoverse2_root / ".distill_cache").glob("argoverse2_val_*.npz")
    cache.unlink()
    monkeypatch.setattr(argoverse2, "PARALLEL_FROM", 2)  # the pool path of the full splits
    parallel = Argoverse2Forecasting.open(argoverse2_root, "val")
    assert cache.is_file()
    cached = Argoverse2Forecasting.open(argoverse2_root, "val")
    for ds in (parallel, cached):
        assert ds.data.keys == serial.data.keys
        for name in ("trajectory_xyz", "trajectory_rot"):
            np.testing.assert_array_equal(ds.data.labels[name], serial.data.labels[name])
        np.testing.assert_array_equal(ds.data.history["ego_history_xyz"],
                                      serial.data.history["ego_history_xyz"])


def test_argoverse2_polylines_in_the_focal_frame(argoverse2_root):
    item = Argoverse2Forecasting.open(argoverse2_root, "train")[0]
    poly, mask = item["polylines"], item["polyline_mask"]
    kind = poly[..., 6:].argmax(-1)
    assert mask[0].all() and (kind[0] == KINDS.index("target")).all()
    assert torch.allclose(poly[0, -1, :2], torch.zeros(2), atol=1e-6)  # the target at t0
    agents = mask[1:MAX_AGENTS].any(-1)
    assert agents.sum() == 3 and agents[:3].all()  # oncoming car, crossing car, pedestrian
    lanes = mask[MAX_AGENTS:MAX_AGENTS + MAX_LANES].any(-1)
    assert lanes.sum() == 20  # 4 approaches x (in, out, straight, left, right)
    assert mask[MAX_AGENTS + MAX_LANES:].any(-1).sum() == 4  # one crossing per approach
    # The nearest lane is the target's own: a straight centerline through the origin along x.
    nearest = poly[MAX_AGENTS][mask[MAX_AGENTS]][:, :2] * POSITION_SCALE
    assert nearest[:, 1].abs().max() < 0.1 and nearest[:, 0].min() < 0 < nearest[:, 0].max()
    assert (kind[MAX_AGENTS][mask[MAX_AGENTS]] == KINDS.index("lane")).all()


def test_nuscenes_official_split_and_trajectories_match_the_devkit(nuscenes_root):
    from nuscenes.eval.prediction.splits import get_prediction_challenge_split
    ds = NuScenesPrediction.open(nuscenes_root, "train", resolution=64)
    tokens = get_prediction_challenge_split("train", dataroot=str(nuscenes_root))
    assert ["_".join(p) for p in ds.pairs] == tokens and len(tokens) == 2 * 4 * 6
    assert len(NuScenesPrediction.open(nuscenes_root, "val", resolution=64)) == 4 * 6
    helper = ds.rasterizer.static_layer_rasterizer.helper
    for i in (0, 7):
        instance, sample = ds.pairs[i]
        # The devkit's agent frame faces +y; ours faces +x: (x, y) = (y_dev, -x_dev).
        dev = helper.get_future_for_agent(instance, sample, 6, in_agent_frame=True)
        item = ds[i]
        np.testing.assert_allclose(item["trajectory_xyz"][:, :2].numpy(),
                                   np.stack([dev[:, 1], -dev[:, 0]], -1), atol=1e-4)
        past = helper.get_past_for_agent(instance, sample, 2, in_agent_frame=True)[::-1]
        hist = item["ego_history_xyz"][-1 - len(past):-1, :2].numpy()
        np.testing.assert_allclose(hist, np.stack([past[:, 1], -past[:, 0]], -1), atol=1e-4)


def test_nuscenes_raster_is_the_devkit_representation(nuscenes_root):
    """The devkit draws the target red, 40 m ahead of the raster's top edge, centred."""
    R = 100
    ds = NuScenesPrediction.open(nuscenes_root, "train", resolution=R, limit=3)
    raster = ds[2]["raster"]
    assert raster.shape == (3, R, R) and raster.dtype == torch.float32
    red = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(raster[:, int(0.8 * R), R // 2], red)
    image = ds.rasterizer.make_input_representation(*ds.pairs[2])
    expect = (torch.from_numpy(image).permute(2, 0, 1).float() / 255
              - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(raster, expect)
    cached = nuscenes_root / ".distill_cache" / f"nuscenes_rasters_{R}px" / f"{'_'.join(ds.pairs[2])}.png"
    assert cached.is_file()  # the second read comes from the PNG cache, bit-identical
    torch.testing.assert_close(ds[2]["raster"], raster, rtol=0, atol=0)


def _train(out, *flags):
    return train_main(["--model", "baseline", "--model-size", "tiny", "--batch-size", "8",
                       "--num-workers", "0", "--max-epochs", "1", "--output-dir", str(out),
                       "--num-modes", "6", *flags])


@pytest.mark.parametrize("argv,message", [
    (["--benchmark", "nuscenes", "--input-type", "raster"], "needs --nuscenes-root"),
    (["--benchmark", "nuscenes", "--nuscenes-root", "X"], "needs --input-type raster"),
    (["--argoverse2-root", "X"], "only read with --benchmark argoverse2"),
    (["--input-type", "vector"], "needs --benchmark argoverse2"),
    (["--benchmark", "argoverse2", "--argoverse2-root", "X", "--input-type", "vector",
      "--model", "reasoning"], "use --model baseline"),
    (["--benchmark", "argoverse2", "--argoverse2-root", "/nonexistent", "--input-type",
      "vector"], "/nonexistent/train: Argoverse 2 split folder not found"),
    (["--benchmark", "nuscenes", "--nuscenes-root", "/nonexistent", "--input-type",
      "raster"], "no nuScenes tables"),
])
def test_bad_benchmark_flags_are_refused_in_one_line(argv, message, tmp_path, capsys):
    assert _train(tmp_path, *argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_corrupt_scenario_stops_with_one_line_naming_it(argoverse2_root, tmp_path, capsys):
    import shutil
    root = tmp_path / "av2"
    shutil.copytree(argoverse2_root, root, ignore=shutil.ignore_patterns(".distill_cache"))
    bad = sorted((root / "train").iterdir())[1]
    parquet = bad / f"scenario_{bad.name}.parquet"
    parquet.write_bytes(parquet.read_bytes()[:200])
    code = _train(tmp_path / "out", "--benchmark", "argoverse2", "--argoverse2-root", str(root),
                  "--input-type", "vector")
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and parquet.name in err and "not a readable" in err
