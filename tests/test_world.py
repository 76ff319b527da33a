"""The built-in world: deterministic, every behaviour present and doing what it says,
kinematically feasible futures, and the files in the guide's formats."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from distill.data import formats, readers
from distill.world.__main__ import main as world_main
from distill.world.generate import generate_world, simulate
from distill.world.planner import A_MAX, A_MIN, K_MAX
from distill.world.scenarios import BEHAVIOURS
from distill.world.scene import FUTURE_INDICES, T0_INDEX

from conftest import WORLD


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*.npz"))}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_world(a, 3, 2, seed=7, resolution=32)
    generate_world(b, 3, 2, seed=7, resolution=32, workers=2)  # the worker split changes nothing
    generate_world(c, 3, 2, seed=8, resolution=32)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert len(fa) == 3 + 2 + 4 and fa == fb
    assert fa.keys() == fc.keys() and all(fa[k] != fc[k] for k in fa)


def test_every_behaviour_in_200_samples_and_it_shows_in_the_future():
    runs = [simulate(0, "train", i) for i in range(200)]
    runs = [(row["scenario"], track) for _, track, row in runs]
    counts = Counter(b for b, _ in runs)
    assert set(counts) == set(BEHAVIOURS), counts
    for behaviour, track in runs:
        v0, v = track.v[T0_INDEX], track.v[FUTURE_INDICES]
        c, s = np.cos(track.yaw[T0_INDEX]), np.sin(track.yaw[T0_INDEX])
        dx, dy = track.x[-1] - track.x[T0_INDEX], track.y[-1] - track.y[T0_INDEX]
        lateral = -s * dx + c * dy  # final left offset in the t0 frame
        if behaviour in ("red_light", "stop_for_lead"):
            assert v[-1] < v0 - 1.0 or v[-1] < 0.3, behaviour
        if behaviour in ("pedestrian", "follow_lead", "speed_limit_down", "turn_left",
                         "turn_right"):
            assert v.min() < v0 - 0.5, behaviour
        if behaviour == "speed_limit_up":
            assert v[-1] > v0 + 1.0
        if behaviour == "turn_left":
            assert lateral > 2.5
        if behaviour == "turn_right":
            assert lateral < -2.5
        if behaviour in ("go_straight", "green_light", "red_light"):
            assert abs(lateral) < 0.5, behaviour


def test_futures_are_kinematically_feasible(world):
    labels = readers.load_labels(formats.labels_path(world / "teacher_labels", "train"))
    hist = readers.load_ego_history(formats.ego_history_path(world / "teacher_labels", "train"))
    xyz = np.concatenate([hist.rows(labels.keys)["ego_history_xyz"][:, -1:],
                          labels.arrays["trajectory_xyz"]], axis=1).astype(np.float64)
    rot = labels.arrays["trajectory_rot"].astype(np.float64)
    yaw = np.unwrap(np.concatenate([np.zeros((len(xyz), 1)),
                                    np.arctan2(rot[:, :, 1, 0], rot[:, :, 0, 0])], axis=1), axis=1)
    step = np.linalg.norm(np.diff(xyz[..., :2], axis=1), axis=-1)  # mean speed x dt per step
    accel = np.diff(step / formats.DT, axis=1) / formats.DT  # average of a over two steps
    moving = step > 0.05
    kappa = np.abs(np.diff(yaw, axis=1))[moving] / step[moving]
    assert A_MIN * 1.02 <= accel.min() and accel.max() <= A_MAX * 1.02
    assert kappa.max() <= K_MAX * 1.02
    assert np.allclose(xyz[..., 2], 0.0)


def test_world_files_follow_the_formats(world):
    labels_dir = world / "teacher_labels"
    for split in ("train", "val"):
        n = WORLD[split]
        data = readers.load_split(formats.labels_path(labels_dir, split),
                                  formats.ego_history_path(labels_dir, split),
                                  world / "extracted_frames", split)
        assert len(data) == n
        assert data.labels["coc_embeddings"].shape == (n, formats.EMBED_DIM)
        np.testing.assert_allclose(np.linalg.norm(data.labels["coc_embeddings"], axis=1), 1.0,
                                   atol=1e-5)
        assert set(data.labels["scenario"]) <= set(BEHAVIOURS)
        hist = data.history
        np.testing.assert_allclose(hist["ego_history_xyz"][:, -1], 0.0, atol=1e-6)
        np.testing.assert_allclose(hist["ego_history_rot"][:, -1], np.eye(3)[None].repeat(n, 0),
                                   atol=1e-6)
        # History moves forward into t0: the poses before t0 lie behind the ego.
        assert (hist["ego_history_xyz"][:, 0, 0] <= 0).all()
        frames = readers.read_frames(data.frame_paths[0])
        assert frames["frames"].shape == (4, 4, WORLD["resolution"], WORLD["resolution"], 3)
        np.testing.assert_array_equal(
            frames["timestamps"][0], formats.DEFAULT_T0_US + np.array(formats.FRAME_OFFSETS_US))
        assert frames["frames"].std() > 10  # a rendered scene, not a flat image


def test_cli_refuses_to_overwrite(world, capsys):
    code = world_main(["--out", str(world), "--train", "1", "--val", "1"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "--overwrite" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("bad", [["--train", "0"], ["--resolution", "-3"]])
def test_cli_rejects_bad_values(bad):
    with pytest.raises(SystemExit) as e:
        world_main(["--out", "/nonexistent", *bad])
    assert e.value.code == 2
