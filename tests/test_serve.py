"""python -m distill.serve: a student trained a few steps on the small world, served on loopback
and driven over real gRPC by carla-driver-interface's own FakeLoop with the built-in world's
four cameras (rig names, fields of view, mounts). Every plan on the wire is checked against the
in-process student's plan on the same frames and history, rebuilt here from the requests the
loop sent; then malformed requests, a missing camera, the camera map on a Unix socket, SIGTERM
and the command line's refusals."""
from __future__ import annotations

import contextlib
import io
import math
import pickle
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("carla_driver_interface", reason="the [serve] extra is not installed")
import grpc  # noqa: E402  (installed with carla-driver-interface)
from carla_driver_interface.contract import contract_metadata  # noqa: E402
from carla_driver_interface.geometry import Pose, Trajectory  # noqa: E402
from carla_driver_interface.protocol import (  # noqa: E402
    DriveRequest,
    DriveSessionRequest,
    EgodriverServiceStub,
    RolloutCameraImage,
    RolloutEgoTrajectory,
)
from carla_driver_interface.testing import FakeCamera, FakeLoop  # noqa: E402

from distill.constants import CAMERAS, FRAME_OFFSETS_US, FUTURE_STEPS, HISTORY_STEPS  # noqa: E402
from distill.data.dataset import resize_frames  # noqa: E402
from distill.models.config import get_model_config  # noqa: E402
from distill.models.plan import student_plan  # noqa: E402
from distill.ops import normalize_frames  # noqa: E402
from distill.serve import main as serve_main  # noqa: E402
from distill.models import build_student  # noqa: E402
from distill.serving import StudentDriver, build_server  # noqa: E402
from distill.train import main as train_main  # noqa: E402
from distill.kinematics import ActionNormalization  # noqa: E402
from distill.training.trained import TrainedStudent, load_student  # noqa: E402
from distill.world.render import RIGS  # noqa: E402

STEPS = 24  # drives of the closed loop
STEP_US = 100_000
SIZE = 80  # the cameras' pixels: the server resizes them to the checkpoint's 64


def rig_cameras(**renamed) -> list[FakeCamera]:
    """The world's four cameras as FakeLoop declares and renders them (``renamed``: our name ->
    the runtime id to declare instead)."""
    return [FakeCamera(logical_id=renamed.get(name, name), width=SIZE, height=SIZE,
                       fov_deg=rig.fov_deg, x=rig.xyz[0], y=rig.xyz[1], z=rig.xyz[2],
                       yaw_left_deg=math.degrees(rig.yaw)) for name, rig in RIGS.items()]


@pytest.fixture(scope="module")
def checkpoint(world, tmp_path_factory):
    """A baseline tiny student after two steps on the small world (64 px): its action head is no
    longer zero, so its plans depend on the frames and the history."""
    out = tmp_path_factory.mktemp("serve_run")
    argv = ["--model", "baseline", "--model-size", "tiny", "--resolution", "64", "--batch-size",
            "16", "--num-workers", "0", "--lr", "1e-2", "--warmup-epochs", "0", "--action-weight",
            "1.0", "--max-epochs", "1", "--max-train-samples", "32", "--max-val-samples", "8",
            "--save-final-only", "--no-tensorboard", "--output-dir", str(out)]
    with contextlib.chdir(world):
        assert train_main(argv) == 0
    return out / "baseline_seed42_best.pt"


@pytest.fixture(scope="module")
def student(checkpoint):
    return load_student(checkpoint, torch.device("cpu"))


class Server:
    """``python -m distill.serve`` in a subprocess; ``address`` is what it printed."""

    def __init__(self, checkpoint, log, *args):
        self.log = log
        # One thread: the server and the loop share the machine's cores without spinning.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "distill.serve", "--checkpoint", str(checkpoint),
             "--device", "cpu", *args], stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"})
        line = self.proc.stdout.readline()
        assert line.startswith("serving "), line + log.read_text()
        self.address = line.split(" on ", 1)[1].split(" ")[0]

    def stop(self) -> str:
        """SIGTERM; the rest of its stdout."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        return out


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    s = Server(checkpoint, tmp_path_factory.mktemp("serve_log") / "stderr.txt",
               "--host", "127.0.0.1", "--port", "0")
    yield s
    s.stop()


class Recorder(grpc.UnaryUnaryClientInterceptor):
    """Every call a client makes on a channel: (method name, request, response)."""

    def __init__(self):
        self.calls = []

    def intercept_unary_unary(self, continuation, details, request):
        outcome = continuation(details, request)
        self.calls.append((details.method.rsplit("/", 1)[-1], request, outcome.result()))
        return outcome

    def requests(self, method: str) -> list:
        return [(q, r) for m, q, r in self.calls if m == method]


def loop_inputs(recorder, steps: int) -> dict:
    """The batch of the loop's ``steps`` drives (B = steps), from the frames and poses it sent,
    picked here: the frame and pose at each wanted time (all on the 0.1 s grid), the first ones
    where the session had none yet."""
    images = {(q.camera_image.logical_id, q.camera_image.frame_end_us): q.camera_image.image_bytes
              for q, _ in recorder.requests("submit_image_observation")}
    poses = [Pose.from_proto(q.trajectory.poses[0].pose)
             for q, _ in recorder.requests("submit_egomotion_observation")]
    frames, xyz, rot = [], [], []
    for k in range(steps):
        now = k * STEP_US
        frames.append([[np.asarray(Image.open(io.BytesIO(images[camera, max(now + off, 0)]))
                                   .convert("RGB")) for off in FRAME_OFFSETS_US]
                       for camera in CAMERAS])
        t0, rotation0 = poses[k].position, poses[k].rotation_matrix
        history = [poses[max(k - HISTORY_STEPS + 1 + i, 0)] for i in range(HISTORY_STEPS)]
        xyz.append([rotation0.T @ (p.position - t0) for p in history])
        rot.append([rotation0.T @ p.rotation_matrix for p in history])
    return {"frames": resize_frames(normalize_frames(torch.from_numpy(np.array(frames))), 64),
            "ego_history_xyz": torch.tensor(np.array(xyz), dtype=torch.float32),
            "ego_history_rot": torch.tensor(np.array(rot), dtype=torch.float32)}


def plan_xy(student, batch: dict) -> np.ndarray:
    """(B, T, 2) the in-process student's plans."""
    with torch.inference_mode():
        return student_plan(student.model, batch, student.cfg, student.stats).xy.numpy()


def served_plan(response, now: int) -> np.ndarray:
    """(T, 3) the response's plan in the rig frame at ``now``, checked well formed: led by the
    ego pose at ``now``, then the 64 poses 0.1 s apart, all finite."""
    local = Trajectory.from_proto(response.trajectory)
    assert local.timestamps_us == [now + STEP_US * i for i in range(FUTURE_STEPS + 1)]
    anchor = local.poses[0].inverse()
    rig = np.stack([(anchor @ p).position for p in local.poses[1:]])
    assert rig.shape == (FUTURE_STEPS, 3) and np.isfinite(rig).all()
    return rig


def test_fake_loop_plans_are_the_students(server, student):
    recorder = Recorder()
    channel = grpc.intercept_channel(grpc.insecure_channel(server.address), recorder)
    with FakeLoop(channel, rig_cameras(), initial_speed_mps=8.0) as loop:
        result = loop.run(STEPS)
    channel.close()
    assert result.steps == STEPS and not result.terminated_by_policy
    drives = recorder.requests("drive")
    assert [q.time_now_us for q, _ in drives] == [k * STEP_US for k in range(STEPS)]
    batch = loop_inputs(recorder, STEPS)
    want = plan_xy(student, batch)
    for k, (_, response) in enumerate(drives):
        np.testing.assert_allclose(served_plan(response, k * STEP_US)[:, :2], want[k],
                                   atol=1e-4, err_msg=f"drive {k}")
    # The comparison can fail: other frames move the student's plans far beyond the tolerance.
    other = plan_xy(student, {**batch, "frames": torch.zeros_like(batch["frames"])})
    assert np.abs(other - want).max() > 1e-2


def open_session(stub, cameras, uuid: str) -> None:
    request = DriveSessionRequest(session_uuid=uuid)
    request.rollout_spec.vehicle.available_cameras.extend(c.available_camera() for c in cameras)
    stub.start_session(request, metadata=contract_metadata(), timeout=30)


def observe(stub, uuid: str, now: int, pose: Pose, images: dict) -> None:
    egomotion = RolloutEgoTrajectory(session_uuid=uuid)
    egomotion.trajectory.CopyFrom(Trajectory([now], [pose]).to_proto())
    stub.submit_egomotion_observation(egomotion, timeout=30)
    for camera, data in images.items():
        image = RolloutCameraImage(session_uuid=uuid)
        image.camera_image.logical_id = camera
        image.camera_image.frame_start_us = image.camera_image.frame_end_us = now
        image.camera_image.image_bytes = data
        stub.submit_image_observation(image, timeout=30)


def drive_error(stub, uuid: str, now: int) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        stub.drive(DriveRequest(session_uuid=uuid, time_now_us=now), timeout=30)
    return error.value


def test_malformed_requests_get_an_error_and_the_server_keeps_serving(server):
    buffer = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), (90, 90, 90)).save(buffer, format="JPEG")
    good = {camera: buffer.getvalue() for camera in CAMERAS}
    with grpc.insecure_channel(server.address) as channel:
        stub = EgodriverServiceStub(channel)
        for uuid in ("no-frames", "bad-image", "nan-pose"):
            open_session(stub, rig_cameras(), uuid)
        observe(stub, "no-frames", 0, Pose.identity(), {})
        observe(stub, "bad-image", 0, Pose.identity(),
                {**good, "camera_front_tele_30fov": b"not an image"})
        observe(stub, "nan-pose", 0, Pose(np.array([math.nan, 0.0, 0.0]), np.array([0, 0, 0, 1])),
                good)
        expected = {"no-frames": "no frame of camera 'camera_cross_left_120fov' (our "
                                 "camera_cross_left_120fov) before the drive at 0 us",
                    "bad-image": "camera 'camera_front_tele_30fov': the frame ending at 0 us is "
                                 "not a decodable image (cannot identify image file)",
                    "nan-pose": "the egomotion between -1500000 and 0 us has a non-finite pose"}
        for uuid, message in expected.items():
            error = drive_error(stub, uuid, 0)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert error.details() == f"distill-baseline-tiny: {message}"
    with FakeLoop(server.address, rig_cameras()) as loop:
        assert loop.run(3).steps == 3


def test_a_missing_camera_is_named_at_session_start(server):
    with FakeLoop(server.address, rig_cameras()[:3]) as loop, \
            pytest.raises(grpc.RpcError) as error:
        loop.run(1)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "camera 'camera_front_tele_30fov' (our camera_front_tele_30fov) not declared" \
        in error.value.details()


def test_camera_map_on_a_unix_socket_and_sigterm(checkpoint, tmp_path):
    s = Server(checkpoint, tmp_path / "stderr.txt", "--socket", str(tmp_path / "policy.sock"),
               "--camera-map", "front=camera_front_wide_120fov", "tele=camera_front_tele_30fov")
    assert s.address == f"unix://{tmp_path / 'policy.sock'}"
    renamed = rig_cameras(camera_front_wide_120fov="front", camera_front_tele_30fov="tele")
    with FakeLoop(s.address, renamed) as loop:
        assert loop.run(4).steps == 4
    with FakeLoop(s.address, rig_cameras()) as loop, pytest.raises(grpc.RpcError) as error:
        loop.run(1)  # the world's names: 'front' and 'tele' are missing
    assert "camera 'front' (our camera_front_wide_120fov), 'tele' (our camera_front_tele_30fov)" \
        in error.value.details()
    assert s.stop() == "stopped by SIGTERM after 4 drives\n"
    assert s.proc.returncode == 0


def test_bad_input_is_refused_with_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    cases = [(["--checkpoint", str(tmp_path / "none.pt")], "none.pt: checkpoint not found"),
             (["--checkpoint", str(checkpoint), "--camera-map", "front=camera_front"],
              "--camera-map 'front=camera_front': 'camera_front' is not one of our cameras"),
             (["--checkpoint", str(checkpoint), "--camera-map", "front"],
              "--camera-map 'front' is not RUNTIME_ID=OUR_CAMERA")]
    for argv, message in cases:
        assert serve_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    # Without the [serve] extra (a missing checkpoint too: nothing serves if the import works).
    for name in [m for m in sys.modules if m.startswith(("distill.serving", "carla_driver"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "carla_driver_interface", None)
    assert serve_main(["--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert capsys.readouterr().err == ("error: python -m distill.serve needs carla_driver_interface"
                                       ", which the [serve] extra installs (pip install -e "
                                       "'.[serve]')\n")


def test_only_camera_students_are_served():
    raster = TrainedStudent(None, get_model_config("tiny", input_type="raster"), None, None, {})
    with pytest.raises(ValueError, match="a raster student cannot drive from cameras"):
        StudentDriver(raster, {c: c for c in CAMERAS})


def test_a_multimodal_student_sends_its_other_modes(student):
    """Three modes (an untrained student, served in this process): the most probable is the
    plan, the other two go back as sampled trajectories, its probability as a debug scalar."""
    cfg = get_model_config("tiny", num_modes=3)
    torch.manual_seed(0)
    model = build_student("baseline", cfg).eval()
    stats = ActionNormalization(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.02]))  # 1 m/s^2
    driver = StudentDriver(TrainedStudent(model, cfg, stats, student.config, {}),
                           {c: c for c in CAMERAS})
    server, port = build_server(driver, "127.0.0.1:0", "alpasim", 2)
    server.start()
    recorder = Recorder()
    try:
        channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{port}"), recorder)
        with FakeLoop(channel, rig_cameras()) as loop:
            assert loop.run(2).steps == 2
        channel.close()
    finally:
        server.stop(None)
    for k, (_, response) in enumerate(recorder.requests("drive")):
        batch = loop_inputs(recorder, k + 1)
        with torch.inference_mode():
            plan = student_plan(model, {key: v[k:] for key, v in batch.items()}, cfg, stats)
        best = int(plan.probs[0].argmax())
        assert np.ptp(plan.modes_xy[0, :, -1, 1].numpy()) > 1.0  # the modes turn apart
        np.testing.assert_allclose(served_plan(response, k * STEP_US)[:, :2],
                                   plan.modes_xy[0, best].numpy(), atol=1e-4)
        sampled = [Trajectory.from_proto(t) for t in response.debug_info.sampled_trajectories]
        others = [m for m in range(3) if m != best]
        for trajectory, mode in zip(sampled, others, strict=True):
            anchor = trajectory.poses[0].inverse()
            xy = np.stack([(anchor @ p).position[:2] for p in trajectory.poses[1:]])
            np.testing.assert_allclose(xy, plan.modes_xy[0, mode].numpy(), atol=1e-4)
        debug = pickle.loads(response.debug_info.unstructured_debug_info)
        assert debug["policy_name"] == "distill-baseline-tiny"
        assert debug["scalars"]["mode_probability"] == pytest.approx(float(plan.probs[0, best]))
