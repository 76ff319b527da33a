"""The data scripts read PhysicalAI-Autonomous-Vehicles the way NVIDIA's devkit does: on a tiny
copy in the devkit's layout (``pai_layout``), read offline as a flat download and as a Hugging
Face cache, the frames files hold exactly the frames and times the devkit decodes for the same
(clip_id, t0_us) and the ego history its interpolated poses; the user's copy is left untouched;
a split file picks the clips; bad input is one line naming the clip and exit status 2."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.transform import Rotation

from distill.data import formats
from distill.data.readers import DataError, load_ego_history, read_frames
from distill.data.real.source import REPO_ID, UNKNOWN_REVISION, source_from_args

import pai_layout
from pai_layout import one_error_line, script

extract, ego = script("extract_frames"), script("generate_ego_history")
TELE = "camera_front_tele_30fov"


@pytest.fixture(scope="module")
def offline():
    with pai_layout.offline() as patch:
        yield patch


@pytest.fixture(scope="module")
def pai(offline, tmp_path_factory):
    """The copy, and a Hugging Face cache holding it (at pai_layout.REVISION)."""
    root = tmp_path_factory.mktemp("pai")
    clips = pai_layout.build_copy(root, train=2, val=1)
    return root, clips, pai_layout.hf_cache(root, tmp_path_factory.mktemp("hub"))


def reference(cache):
    """The devkit itself, opened offline on the cache as its documentation says."""
    from physical_ai_av import PhysicalAIAVDatasetInterface

    return PhysicalAIAVDatasetInterface(pai_layout.REVISION, cache_dir=cache)


def files_of(root):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_frames_times_and_poses_equal_the_devkits(pai, tmp_path):
    """From the flat copy and from the cache, raw frames at native size: equal to the devkit's
    decode at t0-0.3 ... t0, times equal, history poses within 1e-6 m of the devkit's (cubic
    spline, slerp) in the t0 frame, and nothing written into the copy."""
    root, clips, cache = pai
    before = files_of(root)
    flags = {"local": ["--dataset-root", str(root)], "cache": ["--hf-cache", str(cache)]}
    for name, source in flags.items():
        assert extract([*source, "--out", str(tmp_path / name), "--resolution", "0",
                        "--frame-storage", "raw", "--workers", "1"]) == 0
    assert ego([*flags["local"], "--frames-dir", str(tmp_path / "local"), "--split", "train",
                "--out-dir", str(tmp_path / "labels")]) == 0
    assert files_of(root) == before
    devkit, t0 = reference(cache), formats.DEFAULT_T0_US
    history = load_ego_history(formats.ego_history_path(tmp_path / "labels", "train"))
    for clip in (c for c in clips if c.split == "train"):
        for name in flags:
            mine = read_frames(formats.frames_path(tmp_path / name, "train", clip.index))
            for cam, feature in enumerate(formats.CAMERAS):
                reader = devkit.get_clip_feature(clip.clip_id, feature)
                frames, stamps = reader.decode_images_from_timestamps(
                    t0 + np.array(formats.FRAME_OFFSETS_US))
                np.testing.assert_array_equal(mine["frames"][cam], frames)
                np.testing.assert_array_equal(mine["timestamps"][cam], stamps)
        pose = devkit.get_clip_feature(clip.clip_id, "egomotion")(
            t0 + 100_000 * np.arange(-15, 1)).pose
        to_t0 = Rotation.from_quat(pose.rotation.as_quat()[-1]).inv()
        row = history.keys.index((clip.clip_id, t0))
        np.testing.assert_allclose(history.arrays["ego_history_xyz"][row],
                                   to_t0.apply(pose.translation - pose.translation[-1]),
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(history.arrays["ego_history_rot"][row],
                                   (to_t0 * pose.rotation).as_matrix(), rtol=0, atol=1e-6)


def test_a_split_file_picks_the_clips_in_its_order(pai, tmp_path):
    root, clips, _ = pai
    chosen = [clips[2].clip_id, clips[0].clip_id]  # a val clip, then a train clip
    split_file = tmp_path / "mine.parquet"
    pd.DataFrame({"clip_id": chosen}).to_parquet(split_file)
    assert extract(["--dataset-root", str(root), "--out", str(tmp_path / "f"), "--split",
                    "mine", "--split-file", str(split_file), "--resolution", "8",
                    "--workers", "1"]) == 0
    got = [str(read_frames(formats.frames_path(tmp_path / "f", "mine", i))["clip_id"])
           for i in range(2)]
    assert got == chosen


def break_copy(root, clip, case: str) -> list[str]:
    """Damage the copy at ``root`` for one bad-input case; returns extra script flags."""
    tele_zip = root / pai_layout.camera_zip(TELE).format(chunk_id=clip.chunk)
    left = formats.CAMERAS[0]
    listed = {"unknown clip": [clip.clip_id, "f0000000-0000-4000-8000-00000000000f"],
              "invalid clip": [clip.clip_id, "00000000-0000-4000-8000-000000000000"],
              "clip listed twice": [clip.clip_id, clip.clip_id]}
    if case in listed:
        pd.DataFrame({"clip_id": listed[case]}).to_parquet(root / "split.parquet")
        return ["--split-file", str(root / "split.parquet")]
    if case == "missing camera":
        pai_layout.rewrite_member(tele_zip, f"{clip.clip_id}.{TELE}.mp4", None)
    elif case == "chunk not downloaded":
        tele_zip.unlink()
    elif case == "corrupt video":
        member = f"{clip.clip_id}.{left}.mp4"
        pai_layout.rewrite_member(root / pai_layout.camera_zip(left).format(
            chunk_id=clip.chunk), member, b"\0\0\0\x18ftypmp42" + os.urandom(3000))
    elif case == "video ends early":  # its frames end at 3.3 s
        pai_layout.rewrite_member(tele_zip, f"{clip.clip_id}.{TELE}.timestamps.parquet",
                                  pai_layout.parquet_bytes(
                                      {"timestamp": pai_layout.frame_timestamps(3)[:100]}))
    return {"t0 near the start": ["--t0-us", "4000000"],
            "t0 near the end": ["--t0-us", "5200000"]}.get(case, [])


BAD = {
    "unknown clip": "split.parquet: clip f0000000-0000-4000-8000-00000000000f is not in the "
                    "clip index of the local copy",
    "invalid clip": "split.parquet: clip 00000000-0000-4000-8000-000000000000 is marked invalid",
    "clip listed twice": "is listed twice",
    "missing camera": f": {TELE}: missing from its chunk file",
    "chunk not downloaded": f": {TELE}: camera/{TELE}/{TELE}.chunk_0000.zip is not in the "
                            "local copy",
    "corrupt video": f": {formats.CAMERAS[0]}: not readable (",
    "video ends early": f"is too close to the clip's end: {TELE} covers 27000..3327000 us, the "
                        "sample needs 4800000..5100000 us",
    "t0 near the start": "t0_us 4000000 is too close to the clip's start: egomotion covers "
                         "3100000..11500000 us, the sample needs 2500000..10400000 us",
    "t0 near the end": "t0_us 5200000 is too close to the clip's end: egomotion covers "
                       "3100000..11500000 us",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_the_clip(pai, tmp_path, capsys, case):
    root, clips, _ = pai
    copy = tmp_path / "pai"
    shutil.copytree(root, copy)
    clip = clips[1]  # the second train clip: the first is extracted before the failure
    flags = break_copy(copy, clip, case)
    argv = ["--dataset-root", str(copy), "--out", str(tmp_path / "f"), "--workers", "1", *flags]
    assert extract(argv) == 2
    line = one_error_line(capsys)
    assert BAD[case] in line, line
    # the first clip hit: the t0 cases and the chunk (shared by both train clips) hit the first
    named = clips[0] if case.startswith("t0") or case == "chunk not downloaded" else clip
    assert case in ("unknown clip", "invalid clip") or f"clip {named.clip_id}" in line, line


def test_a_gated_stream_without_a_token_is_one_line(pai, tmp_path, capsys, monkeypatch):
    """The hub without a token, answering as it does for a gated dataset
    (HTTP 401, X-Error-Code GatedRepo): huggingface_hub's own error, one line, exit 2."""
    import httpx2
    import huggingface_hub
    from huggingface_hub.utils import _http

    requests = []

    def gated(request):
        requests.append(str(request.url))
        return httpx2.Response(401, headers={"X-Error-Code": "GatedRepo"}, request=request)

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("PAI_DATASET_ROOT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    huggingface_hub.set_client_factory(lambda: httpx2.Client(
        transport=httpx2.MockTransport(gated)))
    try:
        code = extract(["--out", str(tmp_path / "f")])  # the guide's command: the hub
    finally:
        huggingface_hub.set_client_factory(_http.default_client_factory)
    assert code == 2 and any(REPO_ID in url for url in requests), requests
    line = one_error_line(capsys)
    assert f"{REPO_ID} is gated and no token was found: accept its license" in line, line


def namespace(**flags) -> argparse.Namespace:
    return argparse.Namespace(**{"dataset_root": None, "hf_cache": None, "revision": None,
                                 **flags})


def test_sources_and_their_revisions(pai, tmp_path, monkeypatch):
    root, _, cache = pai
    monkeypatch.delenv("PAI_DATASET_ROOT", raising=False)
    local = source_from_args(namespace(dataset_root=str(root)))
    assert local.kind == "local" and local.revision == UNKNOWN_REVISION
    assert local.known_revision is None
    copy = tmp_path / "copy"  # as `hf download --local-dir` leaves it: the commit recorded
    shutil.copytree(root, copy)
    (copy / ".cache" / "huggingface" / "download").mkdir(parents=True)
    (copy / ".cache" / "huggingface" / "download" / "clip_index.parquet.metadata").write_text(
        f"{pai_layout.REVISION}\netag\n1712656091.1\n")
    assert source_from_args(namespace(dataset_root=str(copy))).known_revision == \
        pai_layout.REVISION
    assert source_from_args(namespace(hf_cache=str(cache))).revision == pai_layout.REVISION
    hub = source_from_args(namespace(revision="main"))  # no copy given: the hub
    assert (hub.kind, hub.revision, hub.offline) == ("hub", "main", False)
    for flags, problem in [({"dataset_root": str(tmp_path)}, "(no features.csv)"),
                           ({"hf_cache": str(tmp_path)}, f"no {REPO_ID} in this Hugging Face"),
                           ({"hf_cache": str(cache), "revision": "ab" * 20}, "no snapshot abab"),
                           ({"dataset_root": str(root), "revision": "main"}, "40-hex commit")]:
        with pytest.raises(DataError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            source_from_args(namespace(**flags))


def test_the_stack_imports_together():
    """The devkit, DALI, av2 and nuscenes-devkit in one interpreter, at the pinned numpy."""
    code = ("import numpy, scipy, physical_ai_av, nvidia.dali, av2, nuscenes, pandas, pyarrow\n"
            "from scipy.spatial.transform import RigidTransform\n"
            "from physical_ai_av import PhysicalAIAVDatasetInterface\n"
            "assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__\n"
            "print(physical_ai_av.__version__, scipy.__version__, numpy.__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[0] == "0.2.3"
