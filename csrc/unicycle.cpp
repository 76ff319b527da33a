// distill::unicycle_rollout and distill::unicycle_rollout_backward, CPU (schemas in library.cpp).
//
// accel, curvature (..., T) and v0 (...) of one floating dtype -> x, y, yaw (..., T) in that
// dtype (see csrc/cpu/unicycle_kernel.cpp for the model and its adjoint). float16/bfloat16 are
// computed in float32. The SIMD kernel set is chosen per call (choose_kernels below) and run on
// chunks of whole SIMD tiles with at::parallel_for; the profiler shows the choice, e.g.
// "distill::unicycle_rollout_cpu_avx512".
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <ATen/record_function.h>
#include <c10/util/accumulate.h>
#include <torch/library.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "checks.h"
#include "unicycle_kernels.h"

namespace distill::unicycle {
namespace {

using Tensors = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
constexpr const char* kOp = "distill::unicycle_rollout";
constexpr const char* kBackwardOp = "distill::unicycle_rollout_backward";
constexpr const char* kActionLayout = "(..., T)";
// Trajectory-steps per parallel task: ~60 us of forward work at the measured ~2 ns per step and
// thread; smaller inputs run on one thread (an OpenMP fork costs a few us).
constexpr int64_t kGrainSteps = 1 << 15;

// ---- which kernel set ------------------------------------------------------------------------

enum class Isa { scalar, avx2, avx512 };

const Kernels* built(Isa isa) {
  switch (isa) {
    case Isa::scalar: return &DEFAULT::kernels;
#ifdef DISTILL_CPU_AVX2
    case Isa::avx2: return &AVX2::kernels;
#endif
#ifdef DISTILL_CPU_AVX512
    case Isa::avx512: return &AVX512::kernels;
#endif
    default: return nullptr;
  }
}

bool cpu_supports(Isa isa) {
#if defined(__x86_64__) && defined(__GNUC__)
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
  }
#endif
  return isa == Isa::scalar;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "?";
}

// DISTILL_CPU_CAPABILITY=scalar|avx2|avx512 (read at every call, for tests and A/B timing) forces
// a kernel set, and fails if it was not built or the CPU lacks it. Unset, torch's own choice
// (at::get_cpu_capability(), which honours ATEN_CPU_CAPABILITY) is followed as far as built.
const Kernels& choose_kernels() {
  const char* env = std::getenv("DISTILL_CPU_CAPABILITY");
  if (env != nullptr && *env != '\0') {
    std::string want(env);
    std::transform(want.begin(), want.end(), want.begin(), [](unsigned char c) { return std::tolower(c); });
    for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
      if (want != isa_name(isa)) continue;
      TORCH_CHECK(built(isa) != nullptr, "DISTILL_CPU_CAPABILITY=", env,
                  ": distill._C was built without the ", isa_name(isa), " kernels (x86-64 builds have them)");
      TORCH_CHECK(cpu_supports(isa), "DISTILL_CPU_CAPABILITY=", env, ": this CPU does not support ",
                  isa_name(isa));
      return *built(isa);
    }
    TORCH_CHECK(false, "DISTILL_CPU_CAPABILITY must be scalar, avx2 or avx512, got '", env, "'");
  }
  static const Kernels& automatic = [] () -> const Kernels& {
    const std::string torch_choice = at::get_cpu_capability();  // "DEFAULT", "AVX2", "AVX512", ...
    for (Isa isa : {Isa::avx512, Isa::avx2}) {
      const bool torch_allows = torch_choice == "AVX512" || (isa == Isa::avx2 && torch_choice == "AVX2");
      if (torch_allows && built(isa) != nullptr && cpu_supports(isa)) return *built(isa);
    }
    return DEFAULT::kernels;
  }();
  return automatic;
}

// ---- checks and layout -----------------------------------------------------------------------

void check_float_dtype(const char* op, const char* name, const at::Tensor& t) {
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16, op, ": ", name,
              " must be a floating tensor (float32, float64, float16 or bfloat16), got ", dtype_name(s));
}

// accel (..., T), curvature like accel, v0 (...), all on CPU with accel's dtype.
void check_actions(const char* op, const at::Tensor& accel, const at::Tensor& curvature,
                   const at::Tensor& v0) {
  DISTILL_CHECK_DEVICE(op, accel, c10::kCPU);
  DISTILL_CHECK_DEVICE(op, curvature, c10::kCPU);
  DISTILL_CHECK_DEVICE(op, v0, c10::kCPU);
  check_float_dtype(op, "accel", accel);
  DISTILL_CHECK_DTYPE(op, curvature, accel.scalar_type());
  DISTILL_CHECK_DTYPE(op, v0, accel.scalar_type());
  DISTILL_CHECK_MIN_DIM(op, accel, 1, kActionLayout);
  DISTILL_CHECK_SHAPE(op, curvature, accel.sizes());
  DISTILL_CHECK_SHAPE(op, v0, accel.sizes().slice(0, accel.dim() - 1));
}

// (rows, T) contiguous in the compute dtype (float64 stays, the rest become float32): a view
// when the input already is one.
at::Tensor as_rows(const at::Tensor& t, int64_t rows, int64_t steps) {
  const auto compute = t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return t.reshape({rows, steps}).to(compute).contiguous();
}

at::Tensor to_shape(const at::Tensor& rows, const at::Tensor& like, at::IntArrayRef sizes) {
  return rows.to(like.scalar_type()).view(sizes);
}

template <typename scalar_t>
const KernelSet<scalar_t>& kernel_set(const Kernels& kernels) {
  if constexpr (std::is_same_v<scalar_t, double>) {
    return kernels.f64;
  } else {
    return kernels.f32;
  }
}

// Runs fn(begin, end, scratch) over the rows in chunks [begin, end) of whole SIMD tiles.
template <typename scalar_t, typename Fn>
void parallel_rows(int64_t rows, int64_t steps, const KernelSet<scalar_t>& set, const Fn& fn) {
  const int64_t tiles = (rows + set.lanes - 1) / set.lanes;
  const int64_t grain = std::max<int64_t>(1, kGrainSteps / std::max<int64_t>(1, steps * set.lanes));
  const int64_t scratch_elems = set.scratch_elems(steps);
  at::parallel_for(0, tiles, grain, [&](int64_t begin, int64_t end) {
    // An ATen allocation is 64-byte aligned (malloc's is 16): whole-vector loads of the tiles
    // never straddle two cache lines.
    const at::Tensor scratch =
        at::empty({scratch_elems}, at::TensorOptions(c10::CppTypeToScalarType<scalar_t>::value));
    fn(begin * set.lanes, std::min(end * set.lanes, rows), scratch.mutable_data_ptr<scalar_t>());
  });
}

// ---- ops -------------------------------------------------------------------------------------

Tensors unicycle_rollout_cpu(const at::Tensor& accel, const at::Tensor& curvature, const at::Tensor& v0,
                             double dt) {
  check_actions(kOp, accel, curvature, v0);
  TORCH_CHECK(std::isfinite(dt), kOp, ": dt must be finite, got ", dt);
  const int64_t steps = accel.size(-1);
  const int64_t rows = c10::multiply_integers(accel.sizes().slice(0, accel.dim() - 1));
  const at::Tensor a = as_rows(accel, rows, steps), k = as_rows(curvature, rows, steps),
                   v = as_rows(v0, rows, 1);
  at::Tensor x = at::empty_like(a), y = at::empty_like(a), yaw = at::empty_like(a);
  if (rows * steps > 0) {
    const Kernels& K = choose_kernels();
    RECORD_FUNCTION(std::string("distill::unicycle_rollout_cpu_") + K.name, std::vector<c10::IValue>());
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "unicycle_rollout_cpu", [&] {
      const Rollout<scalar_t> p{a.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(),
                                v.const_data_ptr<scalar_t>(), x.mutable_data_ptr<scalar_t>(),
                                y.mutable_data_ptr<scalar_t>(), yaw.mutable_data_ptr<scalar_t>(), rows, steps,
                                dt};
      const auto& set = kernel_set<scalar_t>(K);
      parallel_rows(rows, steps, set, [&](int64_t b, int64_t e, scalar_t* s) { set.forward(p, b, e, s); });
    });
  }
  return {to_shape(x, accel, accel.sizes()), to_shape(y, accel, accel.sizes()),
          to_shape(yaw, accel, accel.sizes())};
}

Tensors unicycle_rollout_backward_cpu(const at::Tensor& grad_x, const at::Tensor& grad_y,
                                      const at::Tensor& grad_yaw, const at::Tensor& accel,
                                      const at::Tensor& curvature, const at::Tensor& v0, double dt) {
  check_actions(kBackwardOp, accel, curvature, v0);
  for (const auto& [name, g] : {std::pair<const char*, const at::Tensor&>{"grad_x", grad_x},
                                {"grad_y", grad_y}, {"grad_yaw", grad_yaw}}) {
    check_device(kBackwardOp, name, g, c10::kCPU);
    check_dtype(kBackwardOp, name, g, accel.scalar_type());
    check_shape(kBackwardOp, name, g, accel.sizes());
  }
  TORCH_CHECK(std::isfinite(dt), kBackwardOp, ": dt must be finite, got ", dt);
  const int64_t steps = accel.size(-1);
  const int64_t rows = c10::multiply_integers(accel.sizes().slice(0, accel.dim() - 1));
  const at::Tensor gx = as_rows(grad_x, rows, steps), gy = as_rows(grad_y, rows, steps),
                   gyaw = as_rows(grad_yaw, rows, steps), a = as_rows(accel, rows, steps),
                   k = as_rows(curvature, rows, steps), v = as_rows(v0, rows, 1);
  at::Tensor ga = at::empty_like(a), gk = at::empty_like(a), gv = at::zeros_like(v);
  if (rows * steps > 0) {
    const Kernels& K = choose_kernels();
    RECORD_FUNCTION(std::string("distill::unicycle_rollout_backward_cpu_") + K.name,
                    std::vector<c10::IValue>());
    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "unicycle_rollout_backward_cpu", [&] {
      const RolloutGrad<scalar_t> p{gx.const_data_ptr<scalar_t>(), gy.const_data_ptr<scalar_t>(),
                                    gyaw.const_data_ptr<scalar_t>(), a.const_data_ptr<scalar_t>(),
                                    k.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
                                    ga.mutable_data_ptr<scalar_t>(), gk.mutable_data_ptr<scalar_t>(),
                                    gv.mutable_data_ptr<scalar_t>(), rows, steps, dt};
      const auto& set = kernel_set<scalar_t>(K);
      parallel_rows(rows, steps, set, [&](int64_t b, int64_t e, scalar_t* s) { set.backward(p, b, e, s); });
    });
  }
  return {to_shape(ga, accel, accel.sizes()), to_shape(gk, accel, accel.sizes()),
          to_shape(gv, accel, v0.sizes())};
}

}  // namespace

TORCH_LIBRARY_IMPL(distill, CPU, m) {
  m.impl("unicycle_rollout", &unicycle_rollout_cpu);
  m.impl("unicycle_rollout_backward", &unicycle_rollout_backward_cpu);
}

}  // namespace distill::unicycle
