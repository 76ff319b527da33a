"""Exported students (distill.export, distill.infer, distill.deploy) against the trainer's own
plans: a tiny camera student trained for an epoch on a small world is exported to ONNX and to an
AOTInductor package, each artefact is loaded in a fresh process and run on the 32 validation
samples as uint8 frames, and its plans, mode probabilities and embeddings are compared with
``student_plan`` on the trainer's validation batch. Bad input gets one line and exit status 2.
The matrix of student kinds (baseline / reasoning, unicycle / direct, continuous / discrete, K,
the teacher's kinematics, fp16, raster and vector students) runs under --slow."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from distill.data.batch import collate
from distill.data.readers import read_frames
from distill.datasets.vectors import MAX_POINTS
from distill.deploy import DeployError, load_student
from distill.deploy.module import example_inputs, input_specs
from distill.export import main as export_main
from distill.infer import main as infer_main
from distill.models.plan import student_plan
from distill.ops import normalize_frames
from distill.train import main as train_main
from distill.training.data import load_dataset
from distill.training.trained import load_student as load_checkpoint
from distill.world.generate import generate_world

# Largest error allowed of an fp32 artefact against eager PyTorch: trajectories (m, and rad for
# yaw), mode probabilities, embedding entries.
TOLERANCE = {"trajectories": 1e-3, "probs": 1e-4, "embedding": 1e-3}
VAL = 32  # validation samples
# Loads an artefact in a fresh process and runs it on the inputs of an npz: argv = folder,
# inputs.npz, outputs.npz.
FRESH_PROCESS = """
import sys, numpy as np
from distill.deploy import load_student
inputs = dict(np.load(sys.argv[2]))
np.savez(sys.argv[3], **load_student(sys.argv[1]).plan(**inputs))
"""


def train(world, out, *flags) -> int:
    argv = ["--model-size", "tiny", "--resolution", "64", "--batch-size", "8", "--num-workers",
            "0", "--max-epochs", "1", "--lr", "3e-3", "--warmup-epochs", "0",
            "--no-tensorboard", "--output-dir", str(out), *flags]
    with contextlib.chdir(world):
        return train_main(argv)


@pytest.fixture(scope="session")
def export_world(tmp_path_factory):
    """16 training and 32 validation samples at 64 px."""
    out = tmp_path_factory.mktemp("export_world")
    generate_world(out, 16, VAL, seed=1, resolution=64)
    return out


@pytest.fixture(scope="session")
def camera_checkpoint(export_world):
    """A reasoning student with 6 modes, trained for one epoch (2 steps)."""
    out = export_world / "reasoning_k6"
    assert train(export_world, out, "--model", "reasoning", "--num-modes", "6") == 0
    return out / "reasoning_seed42_best.pt"


@dataclass
class Validation:
    """The 32 validation samples: the trainer's batch and plan of them, the artefact inputs."""

    student: object  # distill.training.trained.TrainedStudent
    batch: dict
    plan: object  # distill.models.plan.Plan
    inputs: dict  # uint8 frames and the history, as numpy arrays

    def replan(self, **changes):
        with torch.inference_mode():
            return student_plan(self.student.model, {**self.batch, **changes}, self.student.cfg,
                                self.student.stats)


def validation(checkpoint) -> Validation:
    student = load_checkpoint(checkpoint, torch.device("cpu"))
    dataset = load_dataset(student.config, "val")
    batch = collate([dataset[i] for i in range(len(dataset))])
    with torch.inference_mode():
        plan = student_plan(student.model, batch, student.cfg, student.stats)
    frames = np.stack([read_frames(p)["frames"] for p in dataset.data.frame_paths])
    inputs = {"frames": frames, "history_xyz": batch["ego_history_xyz"].numpy(),
              "history_rot": batch["ego_history_rot"].numpy()}
    return Validation(student, batch, plan, inputs)


def expected(plan) -> dict[str, np.ndarray]:
    out = {"trajectories": torch.cat([plan.modes_xy, plan.modes_yaw[..., None]], -1).numpy(),
           "probs": plan.probs.numpy()}
    if "embedding" in plan.heads:
        out["embedding"] = plan.heads["embedding"].numpy()
    return out


def export(checkpoint, fmt, out, *flags) -> int:
    return export_main(["--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out),
                        *flags])


def run_fresh(folder, inputs: dict, tmp_path) -> dict[str, np.ndarray]:
    np.savez(tmp_path / "inputs.npz", **inputs)
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(folder), str(tmp_path / "inputs.npz"),
                    str(tmp_path / "outputs.npz")], check=True)
    return dict(np.load(tmp_path / "outputs.npz"))


def max_errors(got: dict, want: dict) -> dict[str, float]:
    assert set(got) == set(want)
    return {k: float(np.abs(got[k].astype(np.float64) - want[k]).max()) for k in want}


@pytest.fixture(scope="session")
def camera_validation(camera_checkpoint):
    return validation(camera_checkpoint)


@pytest.fixture(scope="session")
def artefacts(camera_checkpoint, tmp_path_factory):
    """Each format's export of the camera student, made once (fp32)."""
    made = {}

    def get(fmt):
        if fmt not in made:
            made[fmt] = tmp_path_factory.mktemp("artefacts") / fmt
            assert export(camera_checkpoint, fmt, made[fmt]) == 0
        return made[fmt]
    return get


def test_the_trained_student_plans_differently_for_each_validation_sample(camera_validation):
    """Its plans differ across the samples, and through its frames by far more than the parity
    tolerance (the zero-initialised action head would plan the same for any frames)."""
    plan = camera_validation.plan
    xy = plan.modes_xy.flatten(1, 2)  # (32, K*T, 2)
    spread = (xy[:, None] - xy[None]).norm(dim=-1).amax(-1)  # (32, 32) max distance per pair
    assert (spread + torch.eye(VAL) > 0.01).all()  # every pair differs by > 1 cm somewhere
    frames = camera_validation.batch["frames"]
    moved = (camera_validation.replan(frames=frames.roll(1, 0)).modes_xy
             - plan.modes_xy).norm(dim=-1).amax((1, 2))  # (32,) each with another's frames
    assert moved.median() > 10 * TOLERANCE["trajectories"], moved
    assert moved.max() > 100 * TOLERANCE["trajectories"], moved


@pytest.mark.parametrize("fmt", ["onnx", "aoti"])
def test_an_exported_student_in_a_fresh_process_plans_what_the_trainer_plans(
        fmt, artefacts, camera_validation, tmp_path, capsys):
    folder = artefacts(fmt)
    errors = max_errors(run_fresh(folder, camera_validation.inputs, tmp_path),
                        expected(camera_validation.plan))
    with capsys.disabled():
        print(f"\n{fmt} fp32 vs eager on {VAL} validation samples, max abs error: {errors}")
    assert all(errors[k] < TOLERANCE[k] for k in errors), errors
    card = json.loads((folder / "model_card.json").read_text())
    assert [i["name"] for i in card["inputs"]] == ["frames", "history_xyz", "history_rot"]
    assert card["inputs"][0] == {"name": "frames", "dtype": "uint8", "shape": ["B", 4, 4, 64, 64, 3],
                                 "description": card["inputs"][0]["description"]}
    assert [o["shape"] for o in card["outputs"]] == [["B", 6, 64, 3], ["B", 6], ["B", 384]]
    assert card["v0"]["in_graph"] and card["provenance"]["dataset"] == "distill built-in world"
    assert card["validation"]["metrics"]["val_ade"] > 0
    assert card["export"]["ops"] == {"onnx": "reference", "aoti": "fused"}[fmt]
    check = card["export"]["check"]["max_abs_error_vs_eager_fp32"]
    assert all(check[k] < TOLERANCE[k] for k in check), check


def test_infer_prints_and_plots_one_sample(artefacts, export_world, tmp_path, capsys):
    frames = export_world / "extracted_frames" / "val" / "sample_00003.npz"
    arrays = read_frames(frames)
    key = f"{arrays['clip_id']}:{arrays['t0_us']}"
    argv = ["--artefact", str(artefacts("onnx")), "--frames", str(frames), "--ego-history",
            str(export_world / "teacher_labels" / "val_ego_history.npz"), "--key", key,
            "--labels", str(export_world / "teacher_labels" / "val_labels.npz"),
            "--output-dir", str(tmp_path)]
    assert infer_main(argv) == 0
    out = capsys.readouterr().out
    assert f"sample {arrays['clip_id']}" in out and "most probable mode" in out
    stem = f"infer_{arrays['clip_id']}_{arrays['t0_us']}"
    assert {p.name for p in tmp_path.iterdir()} == {f"{stem}.json", f"{stem}_front.png",
                                                    f"{stem}_topdown.png"}
    plan = json.loads((tmp_path / f"{stem}.json").read_text())
    assert np.shape(plan["trajectories"]) == (1, 6, 64, 3)
    # Without labels: the student's plan alone, the same numbers.
    alone = argv[:argv.index("--labels")] + ["--output-dir", str(tmp_path / "alone")]
    assert infer_main(alone) == 0 and capsys.readouterr().out == out.replace(
        str(tmp_path), str(tmp_path / "alone"))
    assert (tmp_path / "alone" / f"{stem}_front.png").is_file()
    # Wrong input shapes: frames at another resolution, then a wrong --key.
    small = tmp_path / "small.npz"
    np.savez(small, frames=arrays["frames"][:, :, ::2, ::2], clip_id=arrays["clip_id"],
             t0_us=arrays["t0_us"], timestamps=arrays["timestamps"])
    for bad, message in (({"--frames": str(small)}, "the student takes 64x64"),
                         ({"--key": "nope:1"}, "not --key nope:1")):
        assert infer_main(_replace(argv, bad)) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def _replace(argv: list[str], values: dict) -> list[str]:
    """argv with the value of each flag in ``values`` replaced."""
    return [values.get(argv[i - 1], a) if i else a for i, a in enumerate(argv)]


def test_an_artefact_refuses_inputs_that_break_its_card(artefacts, camera_validation, tmp_path):
    student = load_student(artefacts("onnx"))
    inputs = {k: v[:2] for k, v in camera_validation.inputs.items()}
    assert student.plan(**inputs)["trajectories"].shape == (2, 6, 64, 3)
    for change, message in (
            ({"frames": inputs["frames"][:, :, :, :32]}, "input 'frames' is uint8 (2, 4, 4, 32, "
                                                          "64, 3), the artefact takes uint8"),
            ({"frames": inputs["frames"].astype(np.float32)}, "input 'frames' is float32"),
            ({"history_xyz": inputs["history_xyz"][:1]}, "with B = 2"),
            ({"v0": np.zeros(2, np.float32)}, "unknown input(s) ['v0']")):
        with pytest.raises(DeployError) as e:
            student.plan(**{**inputs, **change})
        assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(DeployError, match="not an exported student"):
        load_student(tmp_path)


def test_bad_requests_get_one_line_and_exit_2(camera_checkpoint, tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    cases = [(text, "onnx", [], "not a readable checkpoint"),
             (other, "onnx", [], "not a distill checkpoint"),
             (tmp_path / "missing.pt", "onnx", [], "checkpoint not found"),
             (camera_checkpoint, "onnx", ["--precision", "bf16"], "no bfloat16 type")]
    if not torch.cuda.is_available():
        cases.append((camera_checkpoint, "tensorrt", [], "TensorRT needs a CUDA GPU"))
    for checkpoint, fmt, flags, message in cases:
        assert export(checkpoint, fmt, tmp_path / "out", *flags) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


# --- The matrix of student kinds (pytest --slow) -------------------------------------------

KINDS = {
    "baseline-unicycle-k1": ["--model", "baseline"],
    "reasoning-direct-k1": ["--model", "reasoning", "--no-unicycle"],
    "baseline-discrete-k1": ["--model", "baseline", "--discrete-actions"],
    "reasoning-discrete-k6": ["--model", "reasoning", "--discrete-actions", "--num-modes", "6"],
    "baseline-direct-k6": ["--model", "baseline", "--no-unicycle", "--num-modes", "6"],
    "reasoning-teacher-kinematics": ["--model", "reasoning", "--kinematics", "teacher"],
}


@pytest.fixture(scope="session")
def kind_checkpoint(export_world):
    """Each kind of KINDS trained once for one epoch on the export world."""
    made = {}

    def get(kind):
        if kind not in made:
            assert train(export_world, export_world / kind, *KINDS[kind]) == 0
            made[kind] = next((export_world / kind).glob("*_best.pt"))
        return made[kind]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "aoti"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_camera_student_exports_with_parity(kind, fmt, kind_checkpoint, tmp_path,
                                                          capsys):
    checkpoint = kind_checkpoint(kind)
    assert export(checkpoint, fmt, tmp_path / "artefact") == 0
    val = validation(checkpoint)
    errors = max_errors(run_fresh(tmp_path / "artefact", val.inputs, tmp_path), expected(val.plan))
    with capsys.disabled():
        print(f"\n{kind} {fmt} fp32, max abs error on {VAL} validation samples: {errors}")
    assert all(errors[k] < TOLERANCE[k] for k in errors), errors
    card = json.loads((tmp_path / "artefact" / "model_card.json").read_text())
    v0_input = kind == "reasoning-teacher-kinematics" and fmt == "onnx"
    assert card["v0"]["in_graph"] is not v0_input
    assert ("v0" in [i["name"] for i in card["inputs"]]) is v0_input


@pytest.mark.slow
@pytest.mark.parametrize("fmt,precision", [("onnx", "fp16"), ("aoti", "fp16"),
                                           ("aoti", "bf16")])
def test_half_precision_artefacts_and_their_error(fmt, precision, camera_checkpoint,
                                                  camera_validation, tmp_path, capsys):
    """Reported, not held to the fp32 tolerance: the network in half precision moves the plans
    by centimetres (the rollout and v0 stay float32)."""
    assert export(camera_checkpoint, fmt, tmp_path / "artefact", "--precision", precision) == 0
    errors = max_errors(run_fresh(tmp_path / "artefact", camera_validation.inputs, tmp_path),
                        expected(camera_validation.plan))
    with capsys.disabled():
        print(f"\n{fmt} {precision} vs eager fp32 on {VAL} validation samples, max abs error: "
              f"{errors}")
    assert errors["trajectories"] < 1.0 and errors["probs"] < 0.05, errors


@pytest.fixture(scope="session")
def benchmark_checkpoints(tmp_path_factory):
    """A baseline raster (nuScenes) and vector (Argoverse 2) student, one epoch on the tiny
    datasets."""
    pytest.importorskip("av2.datasets.motion_forecasting.scenario_serialization")
    pytest.importorskip("nuscenes")
    from distill.datasets import tiny
    root = tmp_path_factory.mktemp("bench")
    assert tiny.main(["--out", str(root), "--av2-train", "8", "--av2-val", "4",
                      "--nuscenes-train-scenes", "1", "--nuscenes-val-scenes", "1"]) == 0
    flags = {"raster": ["--benchmark", "nuscenes", "--nuscenes-root", str(root / "nuscenes")],
             "vector": ["--benchmark", "argoverse2", "--argoverse2-root",
                        str(root / "argoverse2")]}
    for kind, extra in flags.items():
        assert train(root, root / kind, "--model", "baseline", "--input-type", kind, *extra) == 0
    return {kind: root / kind / "baseline_seed42_best.pt" for kind in flags}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "aoti"])
@pytest.mark.parametrize("scene", ["raster", "vector"])
def test_raster_and_vector_students_export_with_parity(scene, fmt, benchmark_checkpoints,
                                                       tmp_path, capsys):
    """On example inputs (random rasters; random polylines with padded points and polylines)
    against ``student_plan`` on the same inputs as a batch."""
    checkpoint = benchmark_checkpoints[scene]
    assert export(checkpoint, fmt, tmp_path / "artefact") == 0
    student = load_checkpoint(checkpoint, torch.device("cpu"))
    specs = input_specs(student.cfg, student.config.resolution, v0_input=False)
    arrays = dict(zip([s.name for s in specs], example_inputs(specs, 8, seed=3)))
    if scene == "vector":  # random lengths: padded points, and some wholly padded polylines
        length = (torch.rand(arrays["polyline_mask"].shape[:2]) * (MAX_POINTS + 1)).long()
        arrays["polyline_mask"] = torch.arange(MAX_POINTS) < length[..., None]
    batch = {"ego_history_xyz": arrays["history_xyz"], "ego_history_rot": arrays["history_rot"]}
    if scene == "raster":
        batch["raster"] = normalize_frames(arrays["raster"][:, None])
    else:
        batch["polylines"], batch["polyline_mask"] = arrays["polylines"], arrays["polyline_mask"]
    with torch.inference_mode():
        want = expected(student_plan(student.model, batch, student.cfg, student.stats))
    got = run_fresh(tmp_path / "artefact", {k: v.numpy() for k, v in arrays.items()}, tmp_path)
    errors = max_errors(got, want)
    with capsys.disabled():
        print(f"\n{scene} {fmt} fp32, max abs error on 8 example inputs: {errors}")
    assert all(errors[k] < TOLERANCE[k] for k in errors), errors
