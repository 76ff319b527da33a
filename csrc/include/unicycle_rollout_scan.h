// The per-step arithmetic of the unicycle scan, shared by the CPU kernels (T = at::vec::Vectorized
// <float|double>: one SIMD lane per trajectory; csrc/cpu/unicycle_rollout_kernel.cpp) and the CUDA kernels
// (T = float|double: one thread per trajectory; csrc/cuda/unicycle_rollout.cu).
//
// In an unnamed namespace: every translation unit keeps its own copy, so the copies compiled with
// AVX2/AVX-512 instructions are never the ones the linker keeps for generic code.
#pragma once

#if defined(__CUDACC__)
#define DISTILL_SCAN_INLINE __host__ __device__ __forceinline__
#else
#define DISTILL_SCAN_INLINE inline
#endif

namespace distill::unicycle {
namespace {

// sum += inc with Kahan's compensation (comp carries the rounding error of the sum): the running
// sums of the scan keep ~1 ulp instead of growing ~sqrt(T) ulp. Measured at T = 64 in float32
// against float64: plain sums made x 6x and yaw 4x less accurate than the reference (whose cumsum
// accumulates in double); compensated, they are as accurate. 4 flops instead of 1.
template <typename T>
DISTILL_SCAN_INLINE void kahan_add(T& sum, T& comp, const T& inc) {
  const T corrected = inc - comp;
  const T next = sum + corrected;
  comp = (next - sum) - corrected;
  sum = next;
}

// Speed and heading, advanced one step (the forward and the backward's pre-pass share it):
//   yaw_{t+1} = yaw_t + k_t (v_t dt + a_t dt^2 / 2),   v_{t+1} = v_t + a_t dt.
template <typename T>
struct Motion {
  T v, v_comp, yaw, yaw_comp;
  DISTILL_SCAN_INLINE explicit Motion(const T& v0) : v(v0), v_comp(0), yaw(0), yaw_comp(0) {}
  // hdt2 = dt^2 / 2
  DISTILL_SCAN_INLINE void step(const T& a, const T& k, const T& dt, const T& hdt2) {
    kahan_add(yaw, yaw_comp, k * (v * dt + a * hdt2));
    kahan_add(v, v_comp, a * dt);
  }
};

}  // namespace
}  // namespace distill::unicycle
