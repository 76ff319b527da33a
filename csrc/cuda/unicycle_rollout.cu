// distill::unicycle_rollout and distill::unicycle_rollout_backward, CUDA (schemas in library.cpp;
// the model and its adjoint are written out in csrc/cpu/unicycle_rollout_kernel.cpp, and the per-step
// arithmetic, compensated sums included, is shared with it: unicycle_rollout_scan.h).
//
// One thread per trajectory scans its T steps in registers; float16/bfloat16 accumulate in float32
// (at::opmath_type). Launched on the current stream with no host synchronisation, so the ops can
// be captured in a CUDA graph (the backward's scratch comes from the caching allocator).
//
// The backward needs the forward's states in reverse order: its pre-pass re-runs the speed and
// heading recurrences (no sin/cos) and stores v_{t+1}, yaw_{t+1} in a (2, T, N) scratch, step-major
// so that a warp's stores and loads are coalesced; the reverse sweep reads them back and
// recomputes sin/cos. (Stepping the recurrences backwards instead, v_t = v_{t+1} - a_t dt, would
// need no scratch but accumulates ~T ulp of error in the float32 gradients.)
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

#include "checks.h"
#include "unicycle_rollout_scan.h"

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
  Motion<acc_t> m(static_cast<acc_t>(v0[n]));
  acc_t px = 0, px_comp = 0, py = 0, py_comp = 0, vcos = m.v, vsin = 0;
  for (int64_t t = 0; t < steps; ++t) {
    m.step(static_cast<acc_t>(accel[row + t]), static_cast<acc_t>(curvature[row + t]), dt, hdt2);
    acc_t s, c;
    sin_cos(m.yaw, &s, &c);
    const acc_t vcos_next = m.v * c, vsin_next = m.v * s;
    kahan_add(px, px_comp, hdt * (vcos + vcos_next));
    kahan_add(py, py_comp, hdt * (vsin + vsin_next));
    vcos = vcos_next;
    vsin = vsin_next;
    x[row + t] = static_cast<scalar_t>(px);
    y[row + t] = static_cast<scalar_t>(py);
    yaw[row + t] = static_cast<scalar_t>(m.yaw);
  }
}

// states: (2, steps, rows) scratch for v_{t+1} and yaw_{t+1}.
template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad_x, const scalar_t* __restrict__ grad_y,
                                const scalar_t* __restrict__ grad_yaw, const scalar_t* __restrict__ accel,
                                const scalar_t* __restrict__ curvature, const scalar_t* __restrict__ v0,
                                scalar_t* __restrict__ grad_accel, scalar_t* __restrict__ grad_curvature,
                                scalar_t* __restrict__ grad_v0, at::opmath_type<scalar_t>* __restrict__ states,
                                int64_t rows, int64_t steps, double dt_) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (n >= rows) return;
  const int64_t row = n * steps;
  acc_t* vs = states + n;  // v_{t+1} at vs[t * rows]
  acc_t* yaws = states + steps * rows + n;  // yaw_{t+1} at yaws[t * rows]
  const acc_t dt = dt_, hdt = dt_ / 2, hdt2 = dt_ * dt_ / 2;
  const acc_t v_start = static_cast<acc_t>(v0[n]);
  Motion<acc_t> m(v_start);
  for (int64_t t = 0; t < steps; ++t) {
    m.step(static_cast<acc_t>(accel[row + t]), static_cast<acc_t>(curvature[row + t]), dt, hdt2);
    vs[t * rows] = m.v;
    yaws[t * rows] = m.yaw;
  }
  // Suffix sums (compensated), j = t + 1; dv_yaw = Gyaw_{j+1} k_j dt.
  acc_t Gx = 0, Gx_comp = 0, Gy = 0, Gy_comp = 0, Gyaw = 0, Gyaw_comp = 0, Sv = 0, Sv_comp = 0,
        dv_yaw = 0;
  for (int64_t t = steps - 1; t >= 0; --t) {
    const acc_t Gx_next = Gx, Gy_next = Gy;
    kahan_add(Gx, Gx_comp, static_cast<acc_t>(grad_x[row + t]));
    kahan_add(Gy, Gy_comp, static_cast<acc_t>(grad_y[row + t]));
    const acc_t Wx = hdt * (Gx + Gx_next), Wy = hdt * (Gy + Gy_next);
    const acc_t v_j = vs[t * rows];
    acc_t s, c;
    sin_cos(yaws[t * rows], &s, &c);
    kahan_add(Sv, Sv_comp, Wx * c + Wy * s + dv_yaw);
    kahan_add(Gyaw, Gyaw_comp, static_cast<acc_t>(grad_yaw[row + t]) + v_j * (Wy * c - Wx * s));
    const acc_t a = static_cast<acc_t>(accel[row + t]), k = static_cast<acc_t>(curvature[row + t]);
    const acc_t v_t = t > 0 ? vs[(t - 1) * rows] : v_start;
    grad_curvature[row + t] = static_cast<scalar_t>(Gyaw * (v_t * dt + a * hdt2));
    grad_accel[row + t] = static_cast<scalar_t>(dt * Sv + Gyaw * k * hdt2);
    dv_yaw = Gyaw * k * dt;
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
      using acc_t = at::opmath_type<scalar_t>;
      at::Tensor states = at::empty({2, steps, rows}, a.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
      backward_kernel<scalar_t><<<blocks_for(rows), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          gx.const_data_ptr<scalar_t>(), gy.const_data_ptr<scalar_t>(), gyaw.const_data_ptr<scalar_t>(),
          a.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
          ga.mutable_data_ptr<scalar_t>(), gk.mutable_data_ptr<scalar_t>(), gv.mutable_data_ptr<scalar_t>(),
          states.mutable_data_ptr<acc_t>(), rows, steps, dt);
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
