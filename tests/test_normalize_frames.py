"""distill::normalize_frames: the compiled CPU kernel against the plain-torch reference."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from distill.ops import IMAGENET_MEAN, IMAGENET_STD, normalize_frames, normalize_frames_reference

OP = torch.ops.distill.normalize_frames.default
MEAN = torch.tensor(IMAGENET_MEAN)
STD = torch.tensor(IMAGENET_STD)


def frames(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)


def channels_last_view(shape):
    """A (..., F, H, W, 3) view of channel-first storage: stride 1 along W, H*W along RGB."""
    *lead, h, w, c = shape
    return frames(*lead, c, h, w).movedim(-3, -1)


CASES = {
    "sample": frames(4, 4, 16, 24, 3),  # 4 cameras x 4 frames
    "batch": frames(2, 4, 4, 8, 10, 3),
    "single_frame": frames(1, 5, 7, 3),
    "multi_chunk": frames(4, 4, 64, 96, 3),  # enough rows for several parallel_for chunks
    "permuted": channels_last_view((4, 4, 8, 12, 3)),
    "sliced": frames(3, 5, 20, 30, 3)[:, 1:4, ::2, 3:-2],
    "transposed_hw": frames(2, 3, 12, 8, 3).transpose(-3, -2),
    "batch_dim_sliced": frames(6, 2, 4, 4, 3)[::3],
    "empty": frames(2, 0, 4, 4, 3),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_reference(name):
    x = CASES[name]
    out = normalize_frames(x)
    want = normalize_frames_reference(x, MEAN, STD)
    *lead, f, h, w, _ = x.shape
    assert out.shape == (*lead, f * 3, h, w)
    assert out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)


def test_layout_is_frame_major():
    x = frames(2, 4, 4, 5, 6, 3)
    out = normalize_frames(x, mean=(0, 0, 0), std=(1, 1, 1))
    for f in range(4):
        for c in range(3):
            torch.testing.assert_close(out[:, :, f * 3 + c], x[:, :, f, :, :, c].float() / 255, atol=1e-6, rtol=0)


def test_custom_mean_std():
    x = frames(3, 6, 7, 3)
    mean, std = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.5, 2.0, 0.25])
    torch.testing.assert_close(normalize_frames(x, mean, std), normalize_frames_reference(x, mean, std), atol=1e-6, rtol=0)
    # non-contiguous mean/std views are fine too
    mean2, std2 = torch.tensor([0.1, 0, 0.5, 0, 0.9, 0])[::2], torch.tensor([0.5, 2.0, 0.25]).flip(0).flip(0)
    torch.testing.assert_close(OP(x, mean2, std2), normalize_frames_reference(x, mean, std), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["sample", "batch", "permuted", "sliced", "empty"])
def test_opcheck(name):
    torch.library.opcheck(OP, (CASES[name], MEAN.clone(), STD.clone()))


def test_meta_shapes():
    x = torch.empty(2, 4, 4, 30, 40, 3, dtype=torch.uint8, device="meta")
    out = OP(x, MEAN.to("meta"), STD.to("meta"))
    assert out.shape == (2, 4, 12, 30, 40) and out.dtype == torch.float32 and out.device.type == "meta"
    # the wrapper on a non-CPU device takes the reference path
    assert normalize_frames(x).shape == (2, 4, 12, 30, 40)


def test_fake_tensor_shapes():
    with FakeTensorMode():
        out = normalize_frames(torch.empty(4, 4, 30, 40, 3, dtype=torch.uint8))
    assert out.shape == (4, 12, 30, 40) and out.dtype == torch.float32


def test_torch_compile_fullgraph():
    def fn(x):
        return normalize_frames(x).mean(dim=(-2, -1))

    x = frames(4, 4, 8, 8, 3)
    # aot_eager: dynamo (fullgraph) + AOTAutograd tracing through the fake impl, without
    # inductor's ~10-15 s of C++ codegen on a cold cache.
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), fn(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_fallback():
    x = frames(2, 4, 8, 8, 3)
    torch.testing.assert_close(normalize_frames(x.cuda()).cpu(), normalize_frames(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "args, match",
    [
        ((frames(4, 4, 8, 8, 3).float(), MEAN, STD), r"frames must be torch\.uint8, got torch\.float32"),
        ((frames(4, 4, 8, 8, 4), MEAN, STD), r"frames must have shape \(\.\.\., F, H, W, 3\), got \(4, 4, 8, 8, 4\)"),
        ((frames(8, 8, 3), MEAN, STD), r"frames must have shape \(\.\.\., F, H, W, 3\) \(at least 4 dims\), got \(8, 8, 3\)"),
        ((frames(4, 4, 8, 8, 3), MEAN.double(), STD), r"mean must be torch\.float32, got torch\.float64"),
        ((frames(4, 4, 8, 8, 3), MEAN, torch.ones(4)), r"std must have shape \(3,\), got \(4,\)"),
        ((frames(4, 4, 8, 8, 3), MEAN[None], STD), r"mean must have shape \(3,\), got \(1, 3\)"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(RuntimeError, match=r"distill::normalize_frames: " + match):
        OP(*args)


def test_bad_input_meta():
    x = torch.empty(4, 4, 8, 8, 4, dtype=torch.uint8, device="meta")
    with pytest.raises(RuntimeError, match=r"distill::normalize_frames: frames must have shape \(\.\.\., F, H, W, 3\)"):
        OP(x, MEAN.to("meta"), STD.to("meta"))
