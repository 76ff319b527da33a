"""Frames files store JPEG by default (``jpeg`` bytes + ``offsets``, no pickle), raw ``frames``
are still read, and a broken JPEG is one line naming the file, the clip and the camera."""
from __future__ import annotations

import numpy as np
import pytest

from distill.data import formats, jpeg
from distill.data.readers import DataError, read_frames, read_stored_frames


def textured_frames(seed: int = 0, size: int = 64) -> np.ndarray:
    """uint8 (4, 4, size, size, 3): tinted stripes at random angles and frequencies plus sensor
    noise, a stand-in for camera images that exercises the JPEG transform (flat world frames
    barely do); detail is mostly in brightness, as in camera images."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    images = []
    for _ in range(16):
        fx, fy = rng.uniform(-6, 6, 2)
        luma = 127 + 70 * np.sin(2 * np.pi * (fx * x + fy * y)) + rng.normal(0, 4, (size, size))
        images.append(np.clip(luma[..., None] * rng.uniform(0.7, 1.2, 3), 0, 255))
    return np.stack(images).astype(np.uint8).reshape(4, 4, size, size, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2)))


def write(path, frames, **kwargs):
    return formats.write_frames(path, frames, "clip-a", 5_100_000,
                                np.arange(16, dtype=np.int64).reshape(4, 4), **kwargs)


def test_jpeg_is_the_default_storage_and_loads_without_pickle(tmp_path):
    frames = textured_frames()
    path = write(tmp_path / "sample_00000.npz", frames)
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"jpeg", "offsets", "clip_id", "t0_us", "timestamps"}
        assert z["jpeg"].dtype == np.uint8 and z["offsets"].dtype == np.int64
        assert z["offsets"].shape == (17,) and z["offsets"][-1] == z["jpeg"].size
    decoded = read_frames(path)
    assert decoded["frames"].shape == frames.shape and str(decoded["clip_id"]) == "clip-a"
    # Camera-major order: image 4 * camera + frame, each close to its own source image.
    for cam, f in [(0, 0), (1, 3), (3, 2)]:
        assert psnr(decoded["frames"][cam, f], frames[cam, f]) > 30
        assert psnr(decoded["frames"][cam, f], frames[cam, (f + 1) % 4]) < 20


def test_world_frames_are_jpeg_at_quality_90_with_high_psnr(world):
    arrays = read_stored_frames(world / "extracted_frames" / "train" / "sample_00000.npz")
    assert "jpeg" in arrays and "frames" not in arrays
    frames = read_frames(world / "extracted_frames" / "train" / "sample_00000.npz")["frames"]
    again = read_frames(write(world / "reencoded.npz", frames, jpeg_quality=None))["frames"]
    np.testing.assert_array_equal(again, frames)  # raw storage keeps the bytes
    stream = jpeg.split_streams(arrays["jpeg"], arrays["offsets"])[5]
    assert jpeg.check_stream(stream) == frames.shape[2:4]
    (world / "reencoded.npz").unlink()


def test_quality_90_keeps_textured_frames_above_34_db(tmp_path):
    frames = textured_frames(seed=3, size=96)
    decoded = read_frames(write(tmp_path / "s.npz", frames))["frames"]
    assert psnr(decoded, frames) > 34


def test_raw_frames_are_still_read(tmp_path):
    frames = textured_frames()
    path = write(tmp_path / "sample_00000.npz", frames, jpeg_quality=None)
    with np.load(path) as z:
        assert "frames" in z.files and "jpeg" not in z.files
    np.testing.assert_array_equal(read_frames(path)["frames"], frames)


def _corrupt(path, image: int, how: str):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    start, end = arrays["offsets"][image], arrays["offsets"][image + 1]
    data = arrays["jpeg"].copy()
    if how == "truncated":  # no end marker
        data[end - 2:end] = 0
    elif how == "garbage":  # start and end markers intact, nothing decodable between them
        data[start + 2:end - 2] = np.random.default_rng(0).integers(0, 255, end - start - 4)
    elif how == "precision":  # a sound structure that no 8-bit decoder takes (12-bit samples)
        sof = next(i for i in range(start, end) if data[i] == 0xFF and data[i + 1] == 0xC0)
        data[sof + 4] = 12
    elif how == "offsets":
        arrays["offsets"] = arrays["offsets"][::-1].copy()
    arrays["jpeg"] = data
    formats.save_npz_atomic(path, compressed=False, **arrays)


@pytest.mark.parametrize("how, problem", [
    ("truncated", "not a complete JPEG"),
    ("garbage", "not a decodable JPEG"),
    ("precision", "not a decodable JPEG"),
    ("offsets", "do not split"),
])
def test_a_broken_jpeg_names_the_file_clip_and_camera(tmp_path, how, problem):
    path = write(tmp_path / "sample_00007.npz", textured_frames())
    _corrupt(path, 6, how)  # camera 1, frame 2
    with pytest.raises(DataError) as e:
        read_frames(path)
    message = str(e.value)
    assert "\n" not in message and "sample_00007.npz" in message and problem in message, message
    if how != "offsets":
        assert "clip clip-a" in message and "camera_front_wide_120fov frame 2" in message, message


def test_stream_check_reads_the_frame_header_and_refuses_broken_structure():
    data, _ = jpeg.encode_images(np.zeros((1, 24, 40, 3), np.uint8))
    assert jpeg.check_stream(data) == (24, 40)
    overrun = data.copy()
    overrun[4:6] = 255  # the first segment's length runs past the end
    for broken in (data[:2], data[:-2], overrun):
        with pytest.raises(ValueError, match="not a"):
            jpeg.check_stream(broken)
