// The CPU kernels of distill::unicycle_rollout and its backward, one set per instruction set.
//
// csrc/cpu/unicycle_rollout_kernel.cpp is compiled once per CPU capability (setup.py): DEFAULT (generic
// x86-64 / any CPU, at::vec's portable Vectorized), AVX2 (-mavx2 -mfma) and AVX512 (-mavx512f
// -mavx512bw -mavx512vl -mavx512dq -mfma), each into its own namespace distill::unicycle::<CAP>.
// csrc/unicycle_rollout.cpp picks one at call time (DISTILL_CPU_CAPABILITY, else torch's choice, capped
// by what the CPU supports) and runs it on chunks of rows with at::parallel_for.
//
// Everything here is plain data (no inline code): the capability translation units are built
// with instructions a generic CPU may lack, so no inline function may be shared with the generic
// one (the linker would keep one copy of it, maybe the AVX-512 one).
#pragma once

#include <cstdint>

namespace distill::unicycle {

// Row-major contiguous (rows, steps) arrays; v0 and grad_v0 are (rows,).
template <typename scalar_t>
struct Rollout {
  const scalar_t* accel;
  const scalar_t* curvature;
  const scalar_t* v0;
  scalar_t* x;
  scalar_t* y;
  scalar_t* yaw;
  int64_t rows;
  int64_t steps;
  double dt;
};

template <typename scalar_t>
struct RolloutGrad {
  const scalar_t* grad_x;
  const scalar_t* grad_y;
  const scalar_t* grad_yaw;
  const scalar_t* accel;
  const scalar_t* curvature;
  const scalar_t* v0;
  scalar_t* grad_accel;
  scalar_t* grad_curvature;
  scalar_t* grad_v0;
  int64_t rows;
  int64_t steps;
  double dt;
};

// One capability's kernels for one dtype. forward/backward process rows [begin, end) using
// `scratch`, which holds at least scratch_elems(steps) elements; lanes = trajectories per SIMD
// tile (chunks whose begin is a multiple of it keep whole tiles together).
template <typename scalar_t>
struct KernelSet {
  int64_t lanes;
  int64_t (*scratch_elems)(int64_t steps);
  void (*forward)(const Rollout<scalar_t>&, int64_t begin, int64_t end, scalar_t* scratch);
  void (*backward)(const RolloutGrad<scalar_t>&, int64_t begin, int64_t end, scalar_t* scratch);
};

struct Kernels {
  const char* name;  // "scalar", "avx2", "avx512"
  KernelSet<float> f32;
  KernelSet<double> f64;
};

// Defined in csrc/cpu/unicycle_rollout_kernel.cpp, once per capability that setup.py built.
namespace DEFAULT { extern const Kernels kernels; }
namespace AVX2 { extern const Kernels kernels; }
namespace AVX512 { extern const Kernels kernels; }

}  // namespace distill::unicycle
