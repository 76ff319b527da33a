"""The four data scripts on a tiny PhysicalAI-Autonomous-Vehicles copy that ``pai_layout`` builds
from world clips: frames picked and decoded right, shards that never collide, resumable runs that
refuse finished output, ego history and teacher labels equal to the world's own files, merged
shards checked, and one-line errors naming the clip."""
from __future__ import annotations

import importlib.util
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from distill.data import formats
from distill.data.readers import load_ego_history, load_labels, load_split, read_frames
from distill.data.real.egomotion import Egomotion, ego_history
from distill.data.text_encoder import embed_texts
from distill.teachers import TeacherError, alpamayo
from distill.world.generate import simulate

import pai_layout

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


extract, ego, labels, merge = (script(n) for n in ("extract_frames", "generate_ego_history",
                                                   "generate_teacher_labels", "merge_shards"))


@pytest.fixture(scope="module")
def pai(tmp_path_factory):
    root = tmp_path_factory.mktemp("pai")
    return root, pai_layout.build_copy(root)


@pytest.fixture(scope="module")
def extracted(pai, tmp_path_factory):
    """Both splits extracted at native size (train with 2 processes, as shards 0/2 and 1/2)."""
    root, _ = pai
    out = tmp_path_factory.mktemp("out")
    frames = str(out / "extracted_frames")
    for shard in ("0/2", "1/2"):
        assert extract(["--dataset-root", str(root), "--out", frames, "--resolution", "0",
                        "--shard", shard, "--workers", "2"]) == 0
    assert extract(["--dataset-root", str(root), "--out", frames, "--split", "val",
                    "--resolution", "0", "--workers", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def labelled(pai, extracted):
    """Ego history of both splits, train labels in shards 0/2 and 1/2 merged, val labels."""
    frames, labels_dir = str(extracted / "extracted_frames"), str(extracted / "teacher_labels")
    assert ego(["--dataset-root", str(pai[0]), "--frames-dir", frames, "--out-dir", labels_dir,
                "--split", "all"]) == 0
    common = ["--teacher", "world", "--frames-dir", frames, "--out-dir", labels_dir]
    for shard in ("0/2", "1/2"):
        assert labels([*common, "--shard", shard, "--batch-size", "1"]) == 0
    assert merge(["--split", "train", "--num-shards", "2", "--labels-dir", labels_dir,
                  "--frames-dir", frames]) == 0
    assert labels([*common, "--split", "val"]) == 0
    return extracted


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(err) == 1, err
    return err[0]


def test_extract_picks_the_latest_frame_at_or_before_each_time(pai, extracted):
    _, clips = pai
    for clip in clips:  # the invalid clip of the index is skipped: indices stay dense
        arrays = read_frames(formats.frames_path(extracted / "extracted_frames", clip.split,
                                                 clip.index))
        key = (str(arrays["clip_id"]), int(arrays["t0_us"]))
        assert key == (clip.clip_id, formats.DEFAULT_T0_US)
        for cam in range(formats.NUM_CAMERAS):
            stamps = pai_layout.frame_timestamps(cam)
            for f, offset in enumerate(formats.FRAME_OFFSETS_US):
                target = formats.DEFAULT_T0_US + offset
                k = max(i for i, t in enumerate(stamps) if t <= target)
                assert pai_layout.read_code(arrays["frames"][cam, f]) == (k, cam)
                assert arrays["timestamps"][cam, f] == stamps[k]


def test_resolution_resume_and_refusing_finished_output(pai, tmp_path, capsys, monkeypatch):
    root, clips = pai
    monkeypatch.setenv("PAI_DATASET_ROOT", str(root))  # the guide's commands, as written
    out = tmp_path / "frames"
    args = ["--out", str(out), "--resolution", "16", "--workers", "1"]
    assert extract(args) == 0
    first = out / "train" / "sample_00000.npz"
    arrays = read_frames(first)
    assert arrays["frames"].shape == (4, 4, 16, 16, 3)
    assert pai_layout.read_code(arrays["frames"][2, 3])[1] == 2
    stamp = first.stat().st_mtime_ns
    (out / "train" / "sample_00001.npz").unlink()
    assert extract(args) == 0
    assert "resuming: 1 samples already extracted" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == stamp and (out / "train" / "sample_00001.npz").is_file()
    assert extract(args) == 2
    assert "already extracted; pass --overwrite" in one_error_line(capsys)
    assert extract([*args[:-2], "--resolution", "24"]) == 2  # another size is not a resume
    assert "holds 16x16 px frames" in one_error_line(capsys)
    assert extract([*args, "--overwrite"]) == 0 and first.stat().st_mtime_ns != stamp


def test_a_missing_camera_names_the_clip(pai, tmp_path, capsys):
    root, clips = pai
    copy = tmp_path / "pai"
    shutil.copytree(root, copy)
    cam = "camera_front_tele_30fov"
    zip_path = copy / "camera" / cam / f"{cam}.chunk_0000.zip"
    pai_layout.drop_member(zip_path, f"{clips[1].clip_id}.{cam}.mp4")
    argv = ["--dataset-root", str(copy), "--out", str(tmp_path / "f"), "--workers", "1"]
    assert extract(argv) == 2
    line = one_error_line(capsys)
    assert f"clip {clips[1].clip_id} has no {cam} video" in line and zip_path.name in line


def test_ego_history_equals_the_worlds(pai, labelled, capsys):
    labels_dir = labelled / "teacher_labels"
    for split in formats.SPLITS:
        history = load_ego_history(formats.ego_history_path(labels_dir, split))
        for row, (clip_id, _) in enumerate(history.keys):
            world = next(simulate(0, c.split, c.index)[2] for c in pai[1] if c.clip_id == clip_id)
            np.testing.assert_allclose(history.arrays["ego_history_xyz"][row],
                                       world["ego_history_xyz"], atol=1e-5)
            np.testing.assert_allclose(history.arrays["ego_history_rot"][row],
                                       world["ego_history_rot"], atol=1e-6)
    assert ego(["--dataset-root", str(pai[0]), "--frames-dir", str(labelled / "extracted_frames"),
                "--out-dir", str(labels_dir)]) == 2
    assert "already exists; pass --overwrite" in one_error_line(capsys)


def test_ego_history_interpolates_to_exact_times_in_the_t0_frame():
    """A 3-D constant turn sampled at 50 Hz off the 10 Hz grid vs its closed form."""
    def pose(t):  # world frame: yaw rate 0.2 rad/s at 8 m/s, pitched 3 deg, offset origin
        yaw = 0.7 + 0.2 * t
        xyz = np.stack([100 + 40 * (np.sin(yaw) - np.sin(0.7)),
                        -50 - 40 * (np.cos(yaw) - np.cos(0.7)), 3 + 0.05 * t], -1)
        return xyz, Rotation.from_euler("ZY", np.stack([yaw, np.full_like(yaw, 0.05)], -1))

    stamps = np.arange(7_000, 8_000_000, 20_000)
    xyz, rot = pose(stamps / 1e6)
    table = Egomotion(stamps, xyz, rot.as_quat())  # scalar-last
    t0 = 5_100_000
    got_xyz, got_rot = ego_history(table, t0, "test")
    times = (t0 + 100_000 * np.arange(-15, 1)) / 1e6
    want_xyz, want_rot = pose(times)
    r0_inv = want_rot[-1].inv()
    np.testing.assert_allclose(got_xyz, r0_inv.apply(want_xyz - want_xyz[-1]), atol=2e-4)
    np.testing.assert_allclose(got_rot, (r0_inv * want_rot).as_matrix(), atol=1e-5)
    np.testing.assert_allclose(got_xyz[-1], 0, atol=1e-6)


def test_teacher_labels_in_shards_merge_into_the_worlds_labels(labelled, capsys):
    frames, labels_dir = str(labelled / "extracted_frames"), labelled / "teacher_labels"
    assert {p.name for p in labels_dir.glob("train_labels*.npz")} == {
        "train_labels_shard0.npz", "train_labels_shard1.npz", "train_labels.npz"}
    assert len(load_labels(labels_dir / "train_labels_shard1.npz").keys) == 1
    for split in formats.SPLITS:
        data = load_split(formats.labels_path(labels_dir, split),
                          formats.ego_history_path(labels_dir, split), frames, split)
        world = [simulate(0, split, i)[2] for i in range(len(data))]
        assert data.keys == [(w["clip_ids"], w["t0_us"]) for w in world]
        np.testing.assert_array_equal(data.labels["trajectory_xyz"],
                                      np.stack([w["trajectory_xyz"] for w in world]))
        assert data.labels["coc_texts"].tolist() == [w["coc_texts"] for w in world]
        np.testing.assert_allclose(data.labels["coc_embeddings"],
                                   embed_texts(data.labels["coc_texts"]), atol=1e-6)
    assert merge(["--split", "train", "--num-shards", "2", "--labels-dir", str(labels_dir)]) == 2
    assert "already exists" in one_error_line(capsys)
    assert labels(["--teacher", "world", "--frames-dir", frames, "--out-dir", str(labels_dir),
                   "--split", "val"]) == 2
    assert "already exists; pass --overwrite" in one_error_line(capsys)


def test_labelling_resumes_after_an_interruption(labelled, tmp_path, monkeypatch, capsys):
    from distill.teachers.world import WorldTeacher

    frames = str(labelled / "extracted_frames")
    argv = ["--teacher", "world", "--frames-dir", frames, "--out-dir", str(tmp_path),
            "--batch-size", "1"]
    real, calls = WorldTeacher.label, []

    def interrupted(self, samples):
        calls.append(samples)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, samples)

    monkeypatch.setattr(WorldTeacher, "label", interrupted)
    with pytest.raises(KeyboardInterrupt):
        labels(argv)
    monkeypatch.setattr(WorldTeacher, "label", real)
    assert labels(argv) == 2
    assert "a partial run is there; pass --resume" in one_error_line(capsys)
    assert labels([*argv, "--resume"]) == 0
    assert "resuming: 1 of 2 samples already labelled" in capsys.readouterr().out
    resumed = load_labels(tmp_path / "train_labels.npz")
    straight = load_labels(labelled / "teacher_labels" / "train_labels.npz")
    assert resumed.keys == straight.keys and not list(tmp_path.glob(".*parts"))
    np.testing.assert_array_equal(resumed.arrays["trajectory_rot"],
                                  straight.arrays["trajectory_rot"])


def _shard_files(tmp_path, labelled):
    for i in range(2):
        shutil.copy(labelled / "teacher_labels" / f"train_labels_shard{i}.npz", tmp_path)


@pytest.mark.parametrize("case, problem", [
    ("missing", "train_labels_shard1.npz: shard missing"),
    ("overlap", "is also in train_labels_shard0.npz"),
    ("shape", "'trajectory_xyz' has shape (1, 64, 2), expected (N, 64, 3)"),
    ("arrays", "has arrays"),
    ("unlabelled", "samples are in no shard"),
])
def test_merge_refuses_bad_shards(labelled, tmp_path, capsys, case, problem):
    _shard_files(tmp_path, labelled)
    second = tmp_path / "train_labels_shard1.npz"
    if case == "missing":
        second.unlink()
    elif case in ("overlap", "shape"):
        arrays = dict(np.load(tmp_path / "train_labels_shard0.npz"))
        if case == "shape":
            arrays["trajectory_xyz"] = arrays["trajectory_xyz"][:, :, :2]
        np.savez(second, **arrays)
    elif case == "arrays":  # one shard from another teacher (no scenario)
        arrays = dict(np.load(second))
        del arrays["scenario"]
        np.savez(second, **arrays)
    argv = ["--split", "train", "--num-shards", "2", "--labels-dir", str(tmp_path),
            "--frames-dir", str(labelled / "extracted_frames")]
    if case == "unlabelled":
        argv[3] = "1"
    assert merge(argv) == 2
    assert problem in one_error_line(capsys)


def test_world_teacher_refuses_clips_that_are_not_its_samples(extracted, tmp_path, capsys):
    assert labels(["--teacher", "world", "--world-seed", "5", "--frames-dir",
                   str(extracted / "extracted_frames"), "--out-dir", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert "is not sample 0 of the built-in world's train split with seed 5" in line


def test_alpamayo_teacher_needs_its_package_and_a_gpu(extracted, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "alpamayo_r1", None)  # import fails
    assert labels(["--teacher", "alpamayo-r1", "--frames-dir", str(extracted / "extracted_frames"),
                   "--out-dir", str(tmp_path)]) == 2
    assert "needs NVIDIA's alpamayo_r1 package" in one_error_line(capsys)
    fake_alpamayo(monkeypatch)
    monkeypatch.setattr(alpamayo, "cuda_available", lambda: False)
    with pytest.raises(TeacherError, match="needs a CUDA GPU"):
        alpamayo.AlpamayoTeacher()


def fake_alpamayo(monkeypatch) -> list:
    """An alpamayo_r1 stand-in with the package's call signatures; returns its calls."""
    calls = []

    class Model:
        tokenizer = "tokenizer"

        @classmethod
        def from_pretrained(cls, name, dtype):
            return cls()

        def to(self, device):
            return self

        def sample_trajectories_from_data_with_vlm_rollout(self, data, **kwargs):
            calls.append((data, kwargs))
            t = torch.arange(64, dtype=torch.float32)
            xyz = torch.stack([t, 0 * t, 0 * t], -1)[None, None, None]  # (1, 1, 1, 64, 3)
            rot = torch.eye(3).expand(1, 1, 1, 64, 3, 3)
            return xyz, rot, {"cot": np.array([[["Keep the lane: the road is clear."]]])}

    class Processor:
        def apply_chat_template(self, messages, **kwargs):
            return {"images": messages[1]["content"][0]["image"], "kwargs": kwargs}

    helper = types.SimpleNamespace(
        create_message=lambda frames: [{}, {"content": [{"image": frames}]}],
        get_processor=lambda tokenizer: Processor(), to_device=lambda data, device: data)
    package = types.ModuleType("alpamayo_r1")
    package.helper = helper
    models = types.ModuleType("alpamayo_r1.models")
    module = types.ModuleType("alpamayo_r1.models.alpamayo_r1")
    module.AlpamayoR1 = Model
    for name, mod in (("alpamayo_r1", package), ("alpamayo_r1.helper", helper),
                      ("alpamayo_r1.models", models), ("alpamayo_r1.models.alpamayo_r1", module)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_alpamayo_teacher_feeds_the_package_and_reads_its_outputs(pai, labelled, tmp_path,
                                                                 monkeypatch):
    """Through the script as the guide orders it (labels before the ego-history file exists:
    the history comes from the dataset's egomotion), with a stand-in package."""
    calls = fake_alpamayo(monkeypatch)
    monkeypatch.setattr(alpamayo, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)
    monkeypatch.setenv("PAI_DATASET_ROOT", str(pai[0]))
    frames = labelled / "extracted_frames"
    with pytest.warns(UserWarning):  # autocast("cuda") without a GPU disables itself
        assert labels(["--split", "val", "--frames-dir", str(frames), "--out-dir",
                       str(tmp_path)]) == 0
    (data, kwargs), = calls
    images = data["tokenized_data"]["images"]
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.uint8
    np.testing.assert_array_equal(images[6].permute(1, 2, 0).numpy(),
                                  read_frames(frames / "val" / "sample_00000.npz")["frames"][1, 2])
    history = load_ego_history(labelled / "teacher_labels" / "val_ego_history.npz").arrays
    np.testing.assert_array_equal(data["ego_history_xyz"].numpy(), history["ego_history_xyz"][None])
    np.testing.assert_array_equal(data["ego_history_rot"].numpy(), history["ego_history_rot"][None])
    assert kwargs["num_traj_samples"] == 1 and kwargs["return_extra"]
    out = load_labels(tmp_path / "val_labels.npz").arrays
    assert out["coc_texts"].tolist() == ["Keep the lane: the road is clear."]
    np.testing.assert_array_equal(out["trajectory_xyz"][0, :, 0], np.arange(64))
    assert "scenario" not in out
