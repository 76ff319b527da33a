// distill::unicycle_rollout and distill::unicycle_rollout_backward, CPU (schemas in library.cpp).
//
// accel, curvature (..., T) and v0 (...) of one floating dtype -> x, y, yaw (..., T) in that
// dtype (see csrc/cpu/unicycle_rollout_kernel.cpp for the model and its adjoint). float16/bfloat16 are
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
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "checks.h"
#include "unicycle_rollout_kernels.h"

namespace distill::unicycle {
namespace {

using Tensors = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
constexpr const char* kOp = "distill::unicycle_rollout";
constexpr const char* kBackwardOp = "distill::unicycle_rollout_backward";
constexpr const char* kActionLayout = "(..., T)";
// Threads (parallel_rows): trajectory-steps per chunk a thread claims at a time (~30-60 us of
// work); the size below which a call runs on the calling thread alone (PARALLEL_STEPS_NOTE);
// the speedup over the threads' summed working time below which a parallel call "did not pay"
// and the calls that then run serially.
constexpr int64_t kGrainSteps = 1 << 14;
constexpr int64_t kParallelSteps = 1 << 16;
constexpr double kMinSpeedup = 1.25;
constexpr int64_t kSerialBackoff = 64;

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

// ---- measured dispatch -------------------------------------------------------------------------
//
// Which set is fastest is not a property of the instruction set's name: on a 2-core Zen 5 VM the
// AVX-512 set ran ~10x slower than the AVX2 set in most fresh processes and faster in others (the
// issue behind this code; docs/compiled_ops.md). So at the first call in a process, when the CPU
// offers more than one built set, each is timed on the same small fixed problem (float32, 1024
// trajectories x 64 steps, forward then backward, one thread, three interleaved rounds, best
// round kept: ~10 ms in all on a 2-core EPYC) and the fastest is used for the rest of the
// process, for every dtype.

constexpr int64_t kProbeRows = 1024, kProbeSteps = 64, kProbeRounds = 3;

struct Probe {
  std::vector<float> accel, curvature, v0, x, y, yaw, gv0, ga, gk;
  explicit Probe(int64_t rows, int64_t steps)
      : accel(rows * steps), curvature(rows * steps), v0(rows), x(rows * steps), y(rows * steps),
        yaw(rows * steps), gv0(rows), ga(rows * steps), gk(rows * steps) {
    for (int64_t i = 0; i < rows * steps; ++i) {  // smooth, bounded, deterministic actions
      accel[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i)));
      curvature[i] = static_cast<float>(0.02 * std::cos(0.11 * static_cast<double>(i)));
    }
    for (int64_t r = 0; r < rows; ++r) v0[r] = static_cast<float>(5 + r % 20);
  }
};

// Seconds of one forward + backward of `kernels` on the probe (the rollout's outputs are fed
// back as the incoming gradients: any finite values do).
double time_kernels(const Kernels& kernels, Probe& p) {
  const KernelSet<float>& set = kernels.f32;
  const at::Tensor scratch = at::empty({set.scratch_elems(kProbeSteps)}, at::kFloat);
  float* s = scratch.mutable_data_ptr<float>();
  const Rollout<float> fwd{p.accel.data(), p.curvature.data(), p.v0.data(), p.x.data(), p.y.data(),
                           p.yaw.data(), kProbeRows, kProbeSteps, 0.1};
  const RolloutGrad<float> bwd{p.x.data(), p.y.data(), p.yaw.data(), p.accel.data(), p.curvature.data(),
                               p.v0.data(), p.ga.data(), p.gk.data(), p.gv0.data(), kProbeRows,
                               kProbeSteps, 0.1};
  const auto start = std::chrono::steady_clock::now();
  set.forward(fwd, 0, kProbeRows, s);
  set.backward(bwd, 0, kProbeRows, s);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct Dispatch {
  const Kernels* kernels;
  std::string how;                                        // "measured", "only", "forced"
  std::vector<std::pair<std::string, double>> seconds;    // per candidate, best round
};

Dispatch measure() {
  std::vector<const Kernels*> candidates;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (built(isa) != nullptr && cpu_supports(isa)) candidates.push_back(built(isa));
  }
  if (candidates.size() == 1) return {candidates[0], "only", {}};
  Probe probe(kProbeRows, kProbeSteps);
  std::vector<double> best(candidates.size(), std::numeric_limits<double>::infinity());
  for (const Kernels* k : candidates) time_kernels(*k, probe);  // warm-up: code, probe pages
  for (int64_t round = 0; round < kProbeRounds; ++round) {
    for (size_t i = 0; i < candidates.size(); ++i) best[i] = std::min(best[i], time_kernels(*candidates[i], probe));
  }
  Dispatch d{nullptr, "measured", {}};
  double fastest = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < candidates.size(); ++i) {
    d.seconds.emplace_back(candidates[i]->name, best[i]);
    if (best[i] < fastest) fastest = best[i], d.kernels = candidates[i];
  }
  return d;
}

const Dispatch& measured() {
  static const Dispatch dispatch = measure();  // thread-safe, once per process
  return dispatch;
}

// DISTILL_CPU_CAPABILITY=scalar|avx2|avx512 (read at every call, for tests and A/B timing) forces
// a kernel set, and fails if it was not built or the CPU lacks it; unset or empty, the measured
// choice above.
const Kernels* forced_kernels() {
  const char* env = std::getenv("DISTILL_CPU_CAPABILITY");
  if (env == nullptr || *env == '\0') return nullptr;
  std::string want(env);
  std::transform(want.begin(), want.end(), want.begin(), [](unsigned char c) { return std::tolower(c); });
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (want != isa_name(isa)) continue;
    TORCH_CHECK(built(isa) != nullptr, "DISTILL_CPU_CAPABILITY=", env,
                ": distill._C was built without the ", isa_name(isa), " kernels (x86-64 builds have them)");
    TORCH_CHECK(cpu_supports(isa), "DISTILL_CPU_CAPABILITY=", env, ": this CPU does not support ",
                isa_name(isa));
    return built(isa);
  }
  TORCH_CHECK(false, "DISTILL_CPU_CAPABILITY must be scalar, avx2 or avx512, got '", env, "'");
}

const Kernels& choose_kernels() {
  const Kernels* forced = forced_kernels();
  return forced != nullptr ? *forced : *measured().kernels;
}

// distill::unicycle_cpu_dispatch(): the choice as JSON, e.g. {"kernel_set": "avx2", "how":
// "measured", "probe_seconds": {"scalar": 0.0021, "avx2": 0.0006}} ("how": "forced" under
// DISTILL_CPU_CAPABILITY, "only" when the CPU offers one set; the probe times are those of the
// process's measurement, taken now if it has not run yet).
std::string unicycle_cpu_dispatch() {
  const Dispatch& d = measured();
  const Kernels* forced = forced_kernels();
  std::ostringstream out;
  out << "{\"kernel_set\": \"" << (forced != nullptr ? forced : d.kernels)->name << "\", \"how\": \""
      << (forced != nullptr ? "forced" : d.how) << "\", \"probe_seconds\": {";
  for (size_t i = 0; i < d.seconds.size(); ++i) {
    out << (i ? ", " : "") << '"' << d.seconds[i].first << "\": " << d.seconds[i].second;
  }
  out << "}}";
  return out.str();
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

// Calls left to run on the calling thread alone, process-wide: set after a parallel call that
// did not pay (see parallel_rows), counted down by the calls after it.
std::atomic<int64_t> serial_calls_left{0};

// Whether this call runs on the calling thread alone.
bool run_serially(int64_t rows, int64_t steps) {
  if (rows * steps < kParallelSteps || at::get_num_threads() == 1 || at::in_parallel_region()) {
    return true;
  }
  return serial_calls_left.load(std::memory_order_relaxed) > 0 &&
         serial_calls_left.fetch_sub(1, std::memory_order_relaxed) > 0;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs fn(begin, end, scratch) over the rows in chunks [begin, end) of whole SIMD tiles.
//
// Threads: below kParallelSteps trajectory-steps the call runs on the calling thread. Above,
// each of torch's threads claims chunks of ~kGrainSteps from a shared counter until none are
// left (not a fixed share each), and the call measures itself: when its wall time exceeds
// kMinSpeedup's share of the threads' summed working time, a thread came late or was
// descheduled (another process holds its core: a data loader, say) and the region waited for
// it; the next kSerialBackoff calls then run on the calling thread, and the one after probes
// again. On 2 idle cores no call trips it; beside a busy core a parallel B = 4096 call took
// ~3-15x its single-thread time (docs/compiled_ops.md).
template <typename scalar_t, typename Fn>
void parallel_rows(int64_t rows, int64_t steps, const KernelSet<scalar_t>& set, const Fn& fn) {
  const int64_t tiles = (rows + set.lanes - 1) / set.lanes;
  // An ATen allocation is 64-byte aligned (malloc's is 16): whole-vector loads of the tiles
  // never straddle two cache lines.
  const auto new_scratch = [&] {
    return at::empty({set.scratch_elems(steps)}, at::TensorOptions(c10::CppTypeToScalarType<scalar_t>::value));
  };
  const auto run = [&](int64_t tile_begin, int64_t tile_end, scalar_t* scratch) {
    fn(tile_begin * set.lanes, std::min(tile_end * set.lanes, rows), scratch);
  };
  if (run_serially(rows, steps)) {
    const at::Tensor scratch = new_scratch();
    run(0, tiles, scratch.mutable_data_ptr<scalar_t>());
    return;
  }
  const int64_t chunk = std::max<int64_t>(1, kGrainSteps / std::max<int64_t>(1, steps * set.lanes));
  const int64_t chunks = (tiles + chunk - 1) / chunk;
  const int64_t threads = std::min<int64_t>(chunks, at::get_num_threads());
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> working_ns{0};
  const auto start = std::chrono::steady_clock::now();
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    const at::Tensor scratch = new_scratch();
    const auto begin = std::chrono::steady_clock::now();
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) {
      run(c * chunk, std::min((c + 1) * chunk, tiles), scratch.mutable_data_ptr<scalar_t>());
    }
    working_ns += static_cast<int64_t>(1e9 * seconds_since(begin));
  });
  if (seconds_since(start) * kMinSpeedup > 1e-9 * static_cast<double>(working_ns.load())) {
    serial_calls_left.store(kSerialBackoff, std::memory_order_relaxed);
  }
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

TORCH_LIBRARY_IMPL(distill, CompositeImplicitAutograd, m) {
  m.impl("unicycle_cpu_dispatch", &unicycle_cpu_dispatch);
}

}  // namespace distill::unicycle
