"""The four data scripts on a tiny PhysicalAI-Autonomous-Vehicles copy that ``pai_layout`` builds
from world clips, read through NVIDIA's devkit: frames picked and decoded right, shards that
never collide, resumable runs that refuse finished output, ego history and teacher labels equal
to the world's own files, merged shards checked (provenance too), the alpamayo-r1 path with a
stand-in model, and one-line errors naming the clip."""
from __future__ import annotations

import json
import shutil
import sys
import types

import numpy as np
import pytest
import torch

from distill.data import formats, provenance
from distill.data.readers import load_ego_history, load_labels, load_split, read_frames
from distill.data.text_encoder import embed_texts
from distill.teachers import TeacherError, alpamayo
from distill.world.generate import simulate, world_provenance

import pai_layout
from pai_layout import one_error_line, script

extract, ego, labels, merge = (script(n) for n in ("extract_frames", "generate_ego_history",
                                                   "generate_teacher_labels", "merge_shards"))


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pai_layout.offline():
        yield


@pytest.fixture(scope="module")
def pai(tmp_path_factory):
    root = tmp_path_factory.mktemp("pai")
    return root, pai_layout.build_copy(root)


@pytest.fixture(scope="module")
def extracted(pai, tmp_path_factory):
    """Both splits extracted at native size, raw (train with 2 processes, as shards 0/2 and
    1/2)."""
    root, _ = pai
    out = tmp_path_factory.mktemp("out")
    frames = str(out / "extracted_frames")
    common = ["--dataset-root", str(root), "--out", frames, "--resolution", "0",
              "--frame-storage", "raw"]
    for shard in ("0/2", "1/2"):
        assert extract([*common, "--shard", shard, "--workers", "2"]) == 0
    assert extract([*common, "--split", "val", "--workers", "1"]) == 0
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


def latest_frames(t0_us: int, camera: int) -> list[int]:
    """The video frame indices a camera's 4 frames of a sample must be."""
    stamps = pai_layout.frame_timestamps(camera)
    return [max(i for i, t in enumerate(stamps) if t <= t0_us + offset)
            for offset in formats.FRAME_OFFSETS_US]


def test_extract_picks_the_latest_frame_at_or_before_each_time(pai, extracted):
    _, clips = pai
    for clip in clips:  # the invalid clip of the index is skipped: indices stay dense
        arrays = read_frames(formats.frames_path(extracted / "extracted_frames", clip.split,
                                                 clip.index))
        key = (str(arrays["clip_id"]), int(arrays["t0_us"]))
        assert key == (clip.clip_id, formats.DEFAULT_T0_US)
        assert arrays["frames"].shape == (4, 4, pai_layout.HEIGHT, pai_layout.WIDTH, 3)
        for cam in range(formats.NUM_CAMERAS):
            wanted = latest_frames(formats.DEFAULT_T0_US, cam)
            assert [pai_layout.read_code(f) for f in arrays["frames"][cam]] == [
                (k, cam) for k in wanted]
            assert arrays["timestamps"][cam].tolist() == pai_layout.frame_timestamps(cam)[
                wanted].tolist()


def test_resolution_resume_and_refusing_finished_output(pai, tmp_path, capsys, monkeypatch):
    root, clips = pai
    monkeypatch.setenv("PAI_DATASET_ROOT", str(root))  # the guide's commands, as written
    out = tmp_path / "frames"
    args = ["--out", str(out), "--resolution", "16", "--workers", "1"]
    assert extract(args) == 0
    first = out / "train" / "sample_00000.npz"
    arrays = read_frames(first)
    assert "jpeg" in np.load(first).files and arrays["frames"].shape == (4, 4, 16, 16, 3)
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
    assert extract([*args, "--frame-storage", "raw"]) == 2  # nor another storage
    assert "holds JPEG frames, this run writes raw" in one_error_line(capsys)
    assert extract([*args, "--overwrite"]) == 0 and first.stat().st_mtime_ns != stamp


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
        assert data.provenance == world_provenance(0)  # the merged shards' and the val run's
        assert data.provenance["teacher_model"] == "distill-world-planner"
        assert not provenance.is_alpamayo(data.provenance)
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
    ("provenance", "train_labels_shard1.npz: its provenance differs from "
                   "train_labels_shard0.npz's (teacher_revision: "),
    ("no provenance", "train_labels_shard1.npz: its provenance differs from "
                      "train_labels_shard0.npz's (one has no provenance)"),
    ("unlabelled", "samples are in no shard"),
])
def test_merge_refuses_bad_shards(labelled, tmp_path, capsys, case, problem):
    _shard_files(tmp_path, labelled)
    second = tmp_path / "train_labels_shard1.npz"
    arrays = dict(np.load(tmp_path / "train_labels_shard0.npz" if case in ("overlap", "shape")
                          else second))
    if case == "shape":
        arrays["trajectory_xyz"] = arrays["trajectory_xyz"][:, :, :2]
    elif case == "arrays":  # one shard from another teacher (no scenario)
        del arrays["scenario"]
    elif case == "provenance":  # labelled by another version of the teacher
        origin = json.loads(str(arrays["provenance"]))
        arrays["provenance"] = np.array(json.dumps({**origin, "teacher_revision": "other"}))
    elif case == "no provenance":  # written before labels had one
        del arrays["provenance"]
    np.savez(second, **arrays)
    if case == "missing":
        second.unlink()
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


def test_alpamayo_teacher_needs_its_package_and_a_gpu(pai, extracted, tmp_path, monkeypatch,
                                                    capsys):
    monkeypatch.setitem(sys.modules, "alpamayo_r1", None)  # import fails
    argv = ["--teacher", "alpamayo-r1", "--frames-dir", str(extracted / "extracted_frames"),
            "--out-dir", str(tmp_path), "--dataset-root", str(pai[0])]
    assert labels(argv) == 2
    assert "needs NVIDIA's alpamayo_r1 package" in one_error_line(capsys)
    fake_alpamayo(monkeypatch)
    monkeypatch.setattr(alpamayo, "cuda_available", lambda: False)
    with pytest.raises(TeacherError, match="needs a CUDA GPU"):
        alpamayo.AlpamayoTeacher(source=None)

    def not_cached(*args, **kwargs):  # what transformers raises offline without the weights
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and "
                      "couldn't find them in the cached files.")

    monkeypatch.setattr(alpamayo, "cuda_available", lambda: True)
    monkeypatch.setattr(sys.modules["alpamayo_r1.models.alpamayo_r1"].AlpamayoR1,
                        "from_pretrained", not_cached)
    assert labels(argv) == 2
    assert ("--model nvidia/Alpamayo-R1-10B: cannot be loaded (a local or cached dataset is read "
            "offline, and so is the model: download it first") in one_error_line(capsys)


STAND_IN_COMMIT = "c0ffee" * 6 + "c0ff"  # the weights' commit, as transformers records it


def fake_alpamayo(monkeypatch) -> list:
    """A stand-in alpamayo_r1 with the package's call signatures that records what the model
    is given: (the images handed to the processor, the model's data, the sampling settings)."""
    calls = []

    class Model:
        tokenizer = "tokenizer"
        config = types.SimpleNamespace(_commit_hash=STAND_IN_COMMIT)

        @classmethod
        def from_pretrained(cls, name, dtype, **kwargs):
            return cls()

        def to(self, device):
            return self

        def sample_trajectories_from_data_with_vlm_rollout(self, data, **kwargs):
            calls.append((data["tokenized_data"]["images"], data, kwargs))
            t = torch.arange(64, dtype=torch.float32)
            xyz = torch.stack([t, 0 * t, 0 * t], -1)[None, None, None]  # (1, 1, 1, 64, 3)
            rot = torch.eye(3).expand(1, 1, 1, 64, 3, 3)
            return xyz, rot, {"cot": np.array([[["Keep the lane: the road is clear."]]])}

    class Processor:
        def apply_chat_template(self, messages, **kwargs):
            images = [part["image"] for part in messages[1]["content"] if "image" in part]
            return {"images": torch.stack(images), "kwargs": kwargs}

    def create_message(frames):  # the package's layout: one image entry per frame
        return [{}, {"content": [{"type": "image", "image": f} for f in frames]}, {}]

    helper = types.SimpleNamespace(create_message=create_message,
                                   get_processor=lambda tokenizer: Processor(),
                                   to_device=lambda data, device: data)
    package = types.ModuleType("alpamayo_r1")
    package.helper = helper
    models = types.ModuleType("alpamayo_r1.models")
    module = types.ModuleType("alpamayo_r1.models.alpamayo_r1")
    module.AlpamayoR1 = Model
    for name, mod in (("alpamayo_r1", package), ("alpamayo_r1.helper", helper),
                      ("alpamayo_r1.models", models), ("alpamayo_r1.models.alpamayo_r1", module)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


def test_alpamayo_teacher_sees_native_frames_in_its_camera_order(pai, tmp_path, monkeypatch):
    """Through the script as the guide orders it (labels before the ego-history file exists),
    with a stand-in package: the model gets the devkit's 16 frames of each sample at native
    size (not the 16 px the student's frames were extracted at), camera-major in the teacher's
    order, the latest at or before t0-0.3 ... t0, and the history at t0-1.5 ... t0."""
    root, clips = pai
    calls = fake_alpamayo(monkeypatch)
    monkeypatch.setattr(alpamayo, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)
    monkeypatch.setenv("PAI_DATASET_ROOT", str(root))
    frames = tmp_path / "frames"
    assert extract(["--out", str(frames), "--split", "val", "--resolution", "16", "--workers",
                    "1"]) == 0
    with pytest.warns(UserWarning):  # autocast("cuda") without a GPU disables itself
        assert labels(["--split", "val", "--frames-dir", str(frames), "--out-dir",
                       str(tmp_path), "--revision", pai_layout.REVISION]) == 0
    (images, data, kwargs), = calls
    assert images.shape == (16, 3, pai_layout.HEIGHT, pai_layout.WIDTH)
    assert images.dtype == torch.uint8
    codes = [pai_layout.read_code(image.permute(1, 2, 0).numpy()) for image in images]
    t0 = formats.DEFAULT_T0_US
    assert codes == [(k, cam) for cam in range(4) for k in latest_frames(t0, cam)]
    world = simulate(0, "val", 0)[2]  # its history: the track at t0-1.5 ... t0, in the t0 frame
    for name in ("ego_history_xyz", "ego_history_rot"):
        np.testing.assert_allclose(data[name].numpy(), world[name][None, None], atol=1e-6)
    assert kwargs["num_traj_samples"] == 1 and kwargs["return_extra"]
    out = load_labels(tmp_path / "val_labels.npz")
    assert out.arrays["coc_texts"].tolist() == ["Keep the lane: the road is clear."]
    np.testing.assert_array_equal(out.arrays["trajectory_xyz"][0, :, 0], np.arange(64))
    assert "scenario" not in out.arrays and provenance.is_alpamayo(out.provenance)
    assert out.provenance == {**out.provenance, "teacher_model": "nvidia/Alpamayo-R1-10B",
                              "teacher_revision": STAND_IN_COMMIT, "dataset":
                              "nvidia/PhysicalAI-Autonomous-Vehicles",
                              "dataset_revision": pai_layout.REVISION}
    assert out.provenance["sampling"]["seed"] == 42 and "seed_rule" in out.provenance["sampling"]
