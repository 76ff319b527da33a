// distill::normalize_frames, CPU kernel (schema in library.cpp).
//
// frames uint8 (..., F, H, W, 3) RGB, any strides; mean/std float32 (3,).
// out float32 contiguous (..., F*3, H, W):
//   out[..., f*3+c, h, w] = (frames[..., f, h, w, c] / 255 - mean[c]) / std[c]
// computed as frames * scale[c] + shift[c] with scale = 1/(255 std), shift = -mean/std.
// One pass over the input; each task handles whole (..., f, h) rows, which it reads once and
// writes as three contiguous output rows (one per channel).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "checks.h"

namespace distill {
namespace {

constexpr const char* kOp = "distill::normalize_frames";
constexpr const char* kFramesLayout = "(..., F, H, W, 3)";
constexpr int64_t kGrainElems = 32768;  // as at::internal::GRAIN_SIZE: smaller inputs run on one thread

at::Tensor normalize_frames_cpu(const at::Tensor& frames, const at::Tensor& mean, const at::Tensor& std) {
  DISTILL_CHECK_DEVICE(kOp, frames, c10::kCPU);
  DISTILL_CHECK_DEVICE(kOp, mean, c10::kCPU);
  DISTILL_CHECK_DEVICE(kOp, std, c10::kCPU);
  DISTILL_CHECK_DTYPE(kOp, frames, at::kByte);
  DISTILL_CHECK_MIN_DIM(kOp, frames, 4, kFramesLayout);
  DISTILL_CHECK_SIZE(kOp, frames, -1, 3, kFramesLayout);
  DISTILL_CHECK_DTYPE(kOp, mean, at::kFloat);
  DISTILL_CHECK_SHAPE(kOp, mean, {3});
  DISTILL_CHECK_DTYPE(kOp, std, at::kFloat);
  DISTILL_CHECK_SHAPE(kOp, std, {3});

  const int64_t nd = frames.dim();
  const int64_t F = frames.size(nd - 4), H = frames.size(nd - 3), W = frames.size(nd - 2);
  std::vector<int64_t> out_sizes(frames.sizes().begin(), frames.sizes().end() - 4);
  out_sizes.insert(out_sizes.end(), {F * 3, H, W});
  at::Tensor out = at::empty(out_sizes, frames.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;

  float scale[3], shift[3];
  const auto m = mean.accessor<float, 1>();
  const auto s = std.accessor<float, 1>();
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * s[c]);
    shift[c] = -m[c] / s[c];
  }

  // A row is one (..., f, h): the first nd-2 dims, unravelled with their strides (any layout).
  const int64_t row_dims = nd - 2;
  const auto sizes = frames.sizes();
  const auto strides = frames.strides();
  const int64_t rows = frames.numel() / (W * 3);
  const int64_t sw = frames.stride(nd - 2), sc = frames.stride(nd - 1);
  const uint8_t* in = frames.data_ptr<uint8_t>();
  float* o = out.data_ptr<float>();
  const int64_t plane = H * W;
  const int64_t grain = std::max<int64_t>(1, kGrainElems / (W * 3));

  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      int64_t rem = r, offset = 0;
      for (int64_t d = row_dims - 1; d >= 0; --d) {
        offset += (rem % sizes[d]) * strides[d];
        rem /= sizes[d];
      }
      // r = bf * H + h with bf = b * F + f, so out channel (b, f*3+c) is plane bf*3+c.
      const int64_t h = r % H, bf = r / H;
      const uint8_t* src = in + offset;
      float* d0 = o + bf * 3 * plane + h * W;
      float* d1 = d0 + plane;
      float* d2 = d1 + plane;
      if (sw == 3 && sc == 1) {  // packed RGB row (the common case): constant strides vectorise
        for (int64_t w = 0; w < W; ++w) {
          d0[w] = static_cast<float>(src[3 * w + 0]) * scale[0] + shift[0];
          d1[w] = static_cast<float>(src[3 * w + 1]) * scale[1] + shift[1];
          d2[w] = static_cast<float>(src[3 * w + 2]) * scale[2] + shift[2];
        }
      } else {
        for (int64_t w = 0; w < W; ++w) {
          const uint8_t* p = src + w * sw;
          d0[w] = static_cast<float>(p[0]) * scale[0] + shift[0];
          d1[w] = static_cast<float>(p[sc]) * scale[1] + shift[1];
          d2[w] = static_cast<float>(p[2 * sc]) * scale[2] + shift[2];
        }
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(distill, CPU, m) {
  m.impl("normalize_frames", &normalize_frames_cpu);
}

}  // namespace distill
