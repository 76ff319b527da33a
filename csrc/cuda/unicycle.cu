// distill::unicycle_rollout and distill::unicycle_rollout_backward, CUDA (schemas in library.cpp;
// the model and its adjoint are written out in csrc/cpu/unicycle_kernel.cpp).
//
// One thread per trajectory scans its T steps in registers; float16/bfloat16 accumulate in float32
// (at::opmath_type). Launched on the current stream with no host synchronisation and no
// allocation beyond the outputs, so the ops can be captured in a CUDA graph.
//
// The backward needs the forward's states in reverse order without storing them: a forward pass
// (adds and multiplies only) reaches v_T and yaw_T, and the reverse sweep steps the recurrences
// back, v_t = v_{t+1} - a_t dt and yaw_t = yaw_{t+1} - k_t (v_t dt + a_t dt^2 / 2), recomputing
// sin/cos of yaw. (Rounding drift of that inversion: a few ulp of v and yaw over T steps.)
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

#include "checks.h"

namespace distill::unicycle {
namespace {

using Tensors = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
constexpr const char* kOp = "distill::unicycle_rollout";
constexpr const char* kBackwardOp = "distill::unicycle_rollout_backward";
constexpr int kThreads = 128;

__device__ __forceinline__ void sin_cos(float a, float* s, float* c) { sincosf(a, s, c); }
__device__ __forceinline__ void sin_cos(double a, double* s, double* c) { sincos(a, s, c); }

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ accel, const scalar_t* __restrict__ curvature,
                               const scalar_t* __restrict__ v0, scalar_t* __restrict__ x,
                               scalar_t* __restrict__ y, scalar_t* __restrict__ yaw, int64_t rows,
                               int64_t steps, double dt_) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= rows) return;
  const int64_t row = n * steps;
  const acc_t dt = dt_, hdt = dt_ / 2, hdt2 = dt_ * dt_ / 2;
  acc_t v = static_cast<acc_t>(v0[n]), psi = 0, px = 0, py = 0, vcos = v, vsin = 0;
  for (int64_t t = 0; t < steps; ++t) {
    const acc_t a = static_cast<acc_t>(accel[row + t]), k = static_cast<acc_t>(curvature[row + t]);
    psi += k * (v * dt + a * hdt2);
    v += a * dt;
    acc_t s, c;
    sin_cos(psi, &s, &c);
    const acc_t vcos_next = v * c, vsin_next = v * s;
    px += hdt * (vcos + vcos_next);
    py += hdt * (vsin + vsin_next);
    vcos = vcos_next;
    vsin = vsin_next;
    x[row + t] = static_cast<scalar_t>(px);
    y[row + t] = static_cast<scalar_t>(py);
    yaw[row + t] = static_cast<scalar_t>(psi);
  }
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad_x, const scalar_t* __restrict__ grad_y,
                                const scalar_t* __restrict__ grad_yaw, const scalar_t* __restrict__ accel,
                                const scalar_t* __restrict__ curvature, const scalar_t* __restrict__ v0,
                                scalar_t* __restrict__ grad_accel, scalar_t* __restrict__ grad_curvature,
                                scalar_t* __restrict__ grad_v0, int64_t rows, int64_t steps, double dt_) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= rows) return;
  const int64_t row = n * steps;
  const acc_t dt = dt_, hdt = dt_ / 2, hdt2 = dt_ * dt_ / 2;
  const acc_t v_start = static_cast<acc_t>(v0[n]);
  acc_t v = v_start, psi = 0;
  for (int64_t t = 0; t < steps; ++t) {
    const acc_t a = static_cast<acc_t>(accel[row + t]), k = static_cast<acc_t>(curvature[row + t]);
    psi += k * (v * dt + a * hdt2);
    v += a * dt;
  }
  // Reverse sweep; at the top of step t, v and psi are v_{t+1} and yaw_{t+1} (j = t + 1).
  acc_t Gx = 0, Gy = 0, Gyaw = 0, Sv = 0, dv_yaw = 0;
  for (int64_t t = steps - 1; t >= 0; --t) {
    const acc_t Gx_j = Gx + static_cast<acc_t>(grad_x[row + t]);
    const acc_t Gy_j = Gy + static_cast<acc_t>(grad_y[row + t]);
    const acc_t Wx = hdt * (Gx_j + Gx), Wy = hdt * (Gy_j + Gy);
    Gx = Gx_j;
    Gy = Gy_j;
    acc_t s, c;
    sin_cos(psi, &s, &c);
    Sv += Wx * c + Wy * s + dv_yaw;
    Gyaw += static_cast<acc_t>(grad_yaw[row + t]) + v * (Wy * c - Wx * s);
    const acc_t a = static_cast<acc_t>(accel[row + t]), k = static_cast<acc_t>(curvature[row + t]);
    const acc_t v_t = t > 0 ? v - a * dt : v_start;
    const acc_t arc = v_t * dt + a * hdt2;  // the step's yaw increment is k * arc
    grad_curvature[row + t] = static_cast<scalar_t>(Gyaw * arc);
    grad_accel[row + t] = static_cast<scalar_t>(dt * Sv + Gyaw * k * hdt2);
    dv_yaw = Gyaw * k * dt;
    psi -= k * arc;
    v = v_t;
  }
  grad_v0[n] = static_cast<scalar_t>(Sv + hdt * Gx + dv_yaw);
}

void check_cuda_actions(const char* op, const at::Tensor& accel, const at::Tensor& curvature,
                        const at::Tensor& v0) {
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"accel", accel},
                                {"curvature", curvature}, {"v0", v0}}) {
    check_device(op, name, t, c10::kCUDA);
    TORCH_CHECK(t.device() == accel.device(), op, ": ", name, " is on ", t.device(), ", accel on ",
                accel.device());
  }
  const auto s = accel.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16, op,
              ": accel must be a floating tensor (float32, float64, float16 or bfloat16), got ",
              dtype_name(s));
  DISTILL_CHECK_DTYPE(op, curvature, s);
  DISTILL_CHECK_DTYPE(op, v0, s);
  DISTILL_CHECK_MIN_DIM(op, accel, 1, "(..., T)");
  DISTILL_CHECK_SHAPE(op, curvature, accel.sizes());
  DISTILL_CHECK_SHAPE(op, v0, accel.sizes().slice(0, accel.dim() - 1));
}

unsigned int blocks_for(int64_t rows) {
  const int64_t blocks = (rows + kThreads - 1) / kThreads;
  TORCH_CHECK(blocks <= 0x7fffffff, "distill::unicycle_rollout: too many trajectories (", rows, ")");
  return static_cast<unsigned int>(blocks);
}

Tensors unicycle_rollout_cuda(const at::Tensor& accel, const at::Tensor& curvature, const at::Tensor& v0,
                              double dt) {
  check_cuda_actions(kOp, accel, curvature, v0);
  TORCH_CHECK(std::isfinite(dt), kOp, ": dt must be finite, got ", dt);
  const c10::cuda::CUDAGuard guard(accel.device());
  const int64_t steps = accel.size(-1);
  const int64_t rows = c10::multiply_integers(accel.sizes().slice(0, accel.dim() - 1));
  const at::Tensor a = accel.contiguous(), k = curvature.contiguous(), v = v0.contiguous();
  at::Tensor x = at::empty_like(a), y = at::empty_like(a), yaw = at::empty_like(a);
  if (rows * steps > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "unicycle_rollout_cuda", [&] {
      forward_kernel<scalar_t><<<blocks_for(rows), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          a.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
          x.mutable_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), yaw.mutable_data_ptr<scalar_t>(),
          rows, steps, dt);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {x, y, yaw};
}

Tensors unicycle_rollout_backward_cuda(const at::Tensor& grad_x, const at::Tensor& grad_y,
                                       const at::Tensor& grad_yaw, const at::Tensor& accel,
                                       const at::Tensor& curvature, const at::Tensor& v0, double dt) {
  check_cuda_actions(kBackwardOp, accel, curvature, v0);
  for (const auto& [name, g] : {std::pair<const char*, const at::Tensor&>{"grad_x", grad_x},
                                {"grad_y", grad_y}, {"grad_yaw", grad_yaw}}) {
    check_device(kBackwardOp, name, g, c10::kCUDA);
    TORCH_CHECK(g.device() == accel.device(), kBackwardOp, ": ", name, " is on ", g.device(), ", accel on ",
                accel.device());
    check_dtype(kBackwardOp, name, g, accel.scalar_type());
    check_shape(kBackwardOp, name, g, accel.sizes());
  }
  TORCH_CHECK(std::isfinite(dt), kBackwardOp, ": dt must be finite, got ", dt);
  const c10::cuda::CUDAGuard guard(accel.device());
  const int64_t steps = accel.size(-1);
  const int64_t rows = c10::multiply_integers(accel.sizes().slice(0, accel.dim() - 1));
  const at::Tensor gx = grad_x.contiguous(), gy = grad_y.contiguous(), gyaw = grad_yaw.contiguous(),
                   a = accel.contiguous(), k = curvature.contiguous(), v = v0.contiguous();
  at::Tensor ga = at::empty_like(a), gk = at::empty_like(a);
  at::Tensor gv = steps > 0 ? at::empty_like(v) : at::zeros_like(v);
  if (rows * steps > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "unicycle_rollout_bwd_cuda", [&] {
      backward_kernel<scalar_t><<<blocks_for(rows), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          gx.const_data_ptr<scalar_t>(), gy.const_data_ptr<scalar_t>(), gyaw.const_data_ptr<scalar_t>(),
          a.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
          ga.mutable_data_ptr<scalar_t>(), gk.mutable_data_ptr<scalar_t>(), gv.mutable_data_ptr<scalar_t>(),
          rows, steps, dt);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {ga, gk, gv};
}

}  // namespace

TORCH_LIBRARY_IMPL(distill, CUDA, m) {
  m.impl("unicycle_rollout", &unicycle_rollout_cuda);
  m.impl("unicycle_rollout_backward", &unicycle_rollout_backward_cuda);
}

}  // namespace distill::unicycle
