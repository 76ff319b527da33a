// CPU kernels of distill::unicycle_rollout and its backward, compiled once per CPU capability
// (CPU_CAPABILITY = DEFAULT, AVX2, AVX512; see setup.py and csrc/include/unicycle_rollout_kernels.h).
// Everything is in an unnamed namespace or in distill::unicycle::CPU_CAPABILITY, so the copies
// built for different instruction sets never merge at link time.
//
// SIMD lanes are trajectories: a tile of L = Vectorized<scalar_t>::size() rows (16 floats on
// AVX-512) is transposed into lane-major buffers buf[t * L + lane], scanned over t with whole
// vectors, and transposed back. The transposes are log2(L) rounds of at::vec::interleave2
// (a perfect shuffle of the row and column index bits), which exist for every capability.
//
// Model (distill/kinematics/unicycle.py), per trajectory, hdt = dt / 2, hdt2 = dt^2 / 2:
//   yaw_{t+1} = yaw_t + k_t (v_t dt + a_t hdt2),  v_{t+1} = v_t + a_t dt
//   x_{t+1} = x_t + hdt (v_t cos yaw_t + v_{t+1} cos yaw_{t+1})   (y: sin)
//   from yaw_0 = x_0 = y_0 = 0, v_0 = v0; outputs x, y, yaw at t = 1..T.
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "unicycle_rollout_kernels.h"
#include "unicycle_rollout_scan.h"

namespace distill::unicycle {
namespace CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// (sin x, cos x) per lane. Sleef's sincos shares the range reduction (one call, not two). float
// uses the 3.5-ulp variant, as torch's own float sin/cos do: measured 15-20% faster forward than
// the 1-ulp one, with float32 errors within 1.3x of the reference's (the bar is 2x). double keeps
// 1 ulp. The portable build uses std::sin / std::cos.
struct SinCosF {
  Vectorized<float> sin, cos;
};
struct SinCosD {
  Vectorized<double> sin, cos;
};
#if defined(CPU_CAPABILITY_AVX512)
inline SinCosF sincos(Vectorized<float> x) {
  const auto r = Sleef_sincosf16_u35(x);
  return {r.x, r.y};
}
inline SinCosD sincos(Vectorized<double> x) {
  const auto r = Sleef_sincosd8_u10(x);
  return {r.x, r.y};
}
#elif defined(CPU_CAPABILITY_AVX2)
inline SinCosF sincos(Vectorized<float> x) {
  const auto r = Sleef_sincosf8_u35avx2(x);
  return {r.x, r.y};
}
inline SinCosD sincos(Vectorized<double> x) {
  const auto r = Sleef_sincosd4_u10avx2(x);
  return {r.x, r.y};
}
#else
inline SinCosF sincos(Vectorized<float> x) { return {x.map(std::sin), x.map(std::cos)}; }
inline SinCosD sincos(Vectorized<double> x) { return {x.map(std::sin), x.map(std::cos)}; }
#endif

template <typename scalar_t>
constexpr int64_t kLanes = Vectorized<scalar_t>::size();

// Columns of the lane-major buffers: steps rounded up to whole L x L transpose blocks.
template <typename scalar_t>
int64_t padded_steps(int64_t steps) {
  return (steps + kLanes<scalar_t> - 1) / kLanes<scalar_t> * kLanes<scalar_t>;
}

// Elements between the lane-major tiles in scratch: a whole tile plus one cache line, so that
// step t of different tiles falls in different L1 sets (at T = 64 a float tile is exactly 4 KiB:
// without the line, step t of the backward's 7 tiles would share one 8-way set).
template <typename scalar_t>
int64_t tile_stride(int64_t steps) {
  return padded_steps<scalar_t>(steps) * kLanes<scalar_t> + 64 / sizeof(scalar_t);
}

// In-register transpose of an L x L block: after log2(L) perfect shuffles, r[i][j] = old r[j][i].
template <typename scalar_t>
inline void transpose_block(Vectorized<scalar_t> (&r)[kLanes<scalar_t>]) {
  constexpr int64_t L = kLanes<scalar_t>;
  for (int64_t round = 1; round < L; round *= 2) {
    Vectorized<scalar_t> shuffled[L];
    for (int64_t i = 0; i < L / 2; ++i) {
      const auto pair = at::vec::interleave2(r[i], r[i + L / 2]);
      shuffled[2 * i] = pair.first;
      shuffled[2 * i + 1] = pair.second;
    }
    for (int64_t i = 0; i < L; ++i) r[i] = shuffled[i];
  }
}

#if defined(CPU_CAPABILITY_AVX2)
// float's 8 x 8 block on AVX2: the classic unpack / shuffle / 128-bit-lane permute sequence, 24
// shuffles instead of the 12 interleave2 calls above, each a cross-lane permute and blend pair.
// The generic transposes were a third of fwd + bwd time on a Zen 3 EPYC (perf: to_lanes 14%,
// from_lanes 18%; docs/compiled_ops.md).
template <>
inline void transpose_block<float>(Vectorized<float> (&r)[8]) {
  __m256 t[8], s[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);      // r[i][0] r[i+1][0] r[i][1] r[i+1][1] | 4 5
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);  // 2 3 | 6 7
  }
  for (int i = 0; i < 8; i += 4) {
    s[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));      // column 0 | 4
    s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));  // column 1 | 5
    s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));  // 2 | 6
    s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));  // 3 | 7
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
  }
}
#endif

// buf[t * L + lane] = src[lane * steps + t] for lane < rows (<= L), zero for lanes >= rows.
template <typename scalar_t>
void to_lanes(const scalar_t* src, int64_t rows, int64_t steps, scalar_t* buf) {
  constexpr int64_t L = kLanes<scalar_t>;
  int64_t t0 = 0;
  if (rows == L) {
    for (; t0 + L <= steps; t0 += L) {
      Vectorized<scalar_t> r[L];
      for (int64_t l = 0; l < L; ++l) r[l] = Vectorized<scalar_t>::loadu(src + l * steps + t0);
      transpose_block<scalar_t>(r);
      for (int64_t i = 0; i < L; ++i) r[i].store(buf + (t0 + i) * L);
    }
  }
  for (int64_t t = t0; t < steps; ++t) {
    for (int64_t l = 0; l < L; ++l) buf[t * L + l] = l < rows ? src[l * steps + t] : scalar_t(0);
  }
}

// The inverse of to_lanes for the first `rows` lanes: dst[lane * steps + t] = buf[t * L + lane].
template <typename scalar_t>
void from_lanes(const scalar_t* buf, int64_t rows, int64_t steps, scalar_t* dst) {
  constexpr int64_t L = kLanes<scalar_t>;
  int64_t t0 = 0;
  if (rows == L) {
    for (; t0 + L <= steps; t0 += L) {
      Vectorized<scalar_t> r[L];
      for (int64_t i = 0; i < L; ++i) r[i] = Vectorized<scalar_t>::loadu(buf + (t0 + i) * L);
      transpose_block<scalar_t>(r);
      for (int64_t l = 0; l < L; ++l) r[l].store(dst + l * steps + t0);
    }
  }
  for (int64_t t = t0; t < steps; ++t) {
    for (int64_t l = 0; l < rows; ++l) dst[l * steps + t] = buf[t * L + l];
  }
}

// Requests the cache lines of the next tile's rows of `src` (rows row0 + L .. of `rows`) while
// this tile computes, a few per step of its scan: at B = 65536 (16 MB per array, beyond the
// caches) they otherwise arrive from DRAM during the transposes (measured +10% forward there).
template <typename scalar_t>
inline void prefetch_next_tile(const scalar_t* src, int64_t row0, int64_t rows, int64_t steps, int64_t t) {
  constexpr int64_t L = kLanes<scalar_t>, per_line = 64 / sizeof(scalar_t);
  if (t % per_line != 0) return;
  for (int64_t row = row0 + L; row < std::min(row0 + 2 * L, rows); ++row) {
    __builtin_prefetch(src + row * steps + t);
  }
}

// ---- the scan (its per-step arithmetic, shared with CUDA: unicycle_rollout_scan.h) -------------------

// dt-derived constants of the model.
template <typename scalar_t>
struct Steps {
  Vectorized<scalar_t> dt, hdt, hdt2;  // dt, dt / 2, dt^2 / 2
  explicit Steps(double step)
      : dt(static_cast<scalar_t>(step)), hdt(static_cast<scalar_t>(step / 2)),
        hdt2(static_cast<scalar_t>(step * step / 2)) {}
};

// ---- forward --------------------------------------------------------------------------------

// Scratch: 3 tiles (accel, curvature, yaw); accel's is reused for x and curvature's for y.
template <typename scalar_t>
void forward_tile(const Rollout<scalar_t>& p, int64_t row0, int64_t rows, scalar_t* scratch) {
  using Vec = Vectorized<scalar_t>;
  constexpr int64_t L = kLanes<scalar_t>;
  const int64_t S = p.steps, tile = tile_stride<scalar_t>(S);
  scalar_t* a_x = scratch;            // accel in, x out
  scalar_t* k_y = scratch + tile;     // curvature in, y out
  scalar_t* yaw_out = scratch + 2 * tile;
  to_lanes(p.accel + row0 * S, rows, S, a_x);
  to_lanes(p.curvature + row0 * S, rows, S, k_y);

  const Steps<scalar_t> c(p.dt);
  Motion<Vec> m(Vec::loadu(p.v0 + row0, rows));
  Vec x(0), x_comp(0), y(0), y_comp(0), vcos = m.v, vsin(0);  // v_t cos yaw_t, v_t sin yaw_t
  for (int64_t t = 0; t < S; ++t) {
    prefetch_next_tile(p.accel, row0, p.rows, S, t);
    prefetch_next_tile(p.curvature, row0, p.rows, S, t);
    m.step(Vec::loadu(a_x + t * L), Vec::loadu(k_y + t * L), c.dt, c.hdt2);
    const auto sc = sincos(m.yaw);
    const Vec vcos_next = m.v * sc.cos, vsin_next = m.v * sc.sin;
    kahan_add(x, x_comp, (vcos + vcos_next) * c.hdt);
    kahan_add(y, y_comp, (vsin + vsin_next) * c.hdt);
    vcos = vcos_next;
    vsin = vsin_next;
    x.store(a_x + t * L);
    y.store(k_y + t * L);
    m.yaw.store(yaw_out + t * L);
  }
  from_lanes(a_x, rows, S, p.x + row0 * S);
  from_lanes(k_y, rows, S, p.y + row0 * S);
  from_lanes(yaw_out, rows, S, p.yaw + row0 * S);
}

// ---- backward -------------------------------------------------------------------------------
//
// The adjoint of the scan, one reverse sweep per tile. With Gx_j = sum_{u >= j} dL/dx_u (and Gy),
// the position terms v_j cos yaw_j weigh Wx_j = hdt (Gx_j + Gx_{j+1}) (Gx_{T+1} = 0, and
// Wx_0 = hdt Gx_1); Gyaw_j = sum_{u >= j} (dL/dyaw_u + v_u (Wy_u cos yaw_u - Wx_u sin yaw_u))
// is the gradient of the yaw increment of step j-1; dL/dv_j = Wx_j cos + Wy_j sin +
// Gyaw_{j+1} k_j dt. Then, for t = j-1 (Sv = sum_{j' >= j} dL/dv_j'):
//   dL/dk_t = Gyaw_j (v_t dt + a_t hdt2),   dL/da_t = dt Sv + Gyaw_j k_t hdt2,
//   dL/dv0 = sum_{j >= 0} dL/dv_j.
//
// Saved or recomputed: the op saves only its inputs; a forward pre-pass over the tile recomputes
// v_t and yaw_t (a few flops per step, no sin/cos) and the sweep recomputes sin/cos from yaw_t.
// sin/cos is ~45% of the backward at B = 4096; saving cos/sin from the forward instead would make
// the forward write, and the backward read and transpose, two more (N, T) arrays: ~20% faster at
// B = 4096 but +60% backward time at B = 65536, where memory traffic bounds the kernels
// (docs/compiled_ops.md).

// Scratch: 7 tiles (accel, curvature, grad_x, grad_y, grad_yaw, v, yaw); accel's is reused for
// grad_accel and curvature's for grad_curvature.
template <typename scalar_t>
void backward_tile(const RolloutGrad<scalar_t>& p, int64_t row0, int64_t rows, scalar_t* scratch) {
  using Vec = Vectorized<scalar_t>;
  constexpr int64_t L = kLanes<scalar_t>;
  const int64_t S = p.steps, tile = tile_stride<scalar_t>(S);
  scalar_t* a_ga = scratch;  // accel in, grad_accel out
  scalar_t* k_gk = scratch + tile;  // curvature in, grad_curvature out
  scalar_t* gx = scratch + 2 * tile;
  scalar_t* gy = scratch + 3 * tile;
  scalar_t* gyaw = scratch + 4 * tile;
  scalar_t* vs = scratch + 5 * tile;  // v_{t+1}
  scalar_t* yaws = scratch + 6 * tile;  // yaw_{t+1}
  const int64_t offset = row0 * S;
  to_lanes(p.accel + offset, rows, S, a_ga);
  to_lanes(p.curvature + offset, rows, S, k_gk);
  to_lanes(p.grad_x + offset, rows, S, gx);
  to_lanes(p.grad_y + offset, rows, S, gy);
  to_lanes(p.grad_yaw + offset, rows, S, gyaw);

  const Steps<scalar_t> c(p.dt);
  const Vec v0 = Vec::loadu(p.v0 + row0, rows);
  {  // pre-pass: the forward's v_{t+1} and yaw_{t+1}
    Motion<Vec> m(v0);
    for (int64_t t = 0; t < S; ++t) {
      prefetch_next_tile(p.accel, row0, p.rows, S, t);
      prefetch_next_tile(p.curvature, row0, p.rows, S, t);
      m.step(Vec::loadu(a_ga + t * L), Vec::loadu(k_gk + t * L), c.dt, c.hdt2);
      m.v.store(vs + t * L);
      m.yaw.store(yaws + t * L);
    }
  }
  // The suffix sums, compensated as the forward's sums; dv_yaw = Gyaw_{j+1} k_j dt.
  Vec Gx(0), Gx_comp(0), Gy(0), Gy_comp(0), Gyaw(0), Gyaw_comp(0), Sv(0), Sv_comp(0), dv_yaw(0);
  for (int64_t t = S - 1; t >= 0; --t) {  // j = t + 1
    prefetch_next_tile(p.grad_x, row0, p.rows, S, t);
    prefetch_next_tile(p.grad_y, row0, p.rows, S, t);
    prefetch_next_tile(p.grad_yaw, row0, p.rows, S, t);
    const Vec Gx_next = Gx, Gy_next = Gy;  // Gx_{j+1}
    kahan_add(Gx, Gx_comp, Vec::loadu(gx + t * L));
    kahan_add(Gy, Gy_comp, Vec::loadu(gy + t * L));
    const Vec Wx = (Gx + Gx_next) * c.hdt, Wy = (Gy + Gy_next) * c.hdt;
    const Vec v_j = Vec::loadu(vs + t * L);
    const auto sc = sincos(Vec::loadu(yaws + t * L));
    kahan_add(Sv, Sv_comp, at::vec::fmadd(Wx, sc.cos, at::vec::fmadd(Wy, sc.sin, dv_yaw)));
    kahan_add(Gyaw, Gyaw_comp,
              at::vec::fmadd(v_j, at::vec::fmsub(Wy, sc.cos, Wx * sc.sin), Vec::loadu(gyaw + t * L)));
    const Vec a = Vec::loadu(a_ga + t * L), k = Vec::loadu(k_gk + t * L);
    const Vec v_t = t > 0 ? Vec::loadu(vs + (t - 1) * L) : v0;
    (Gyaw * at::vec::fmadd(v_t, c.dt, a * c.hdt2)).store(k_gk + t * L);
    const Vec Gyaw_k = Gyaw * k;
    at::vec::fmadd(Sv, c.dt, Gyaw_k * c.hdt2).store(a_ga + t * L);
    dv_yaw = Gyaw_k * c.dt;
  }
  (Sv + at::vec::fmadd(Gx, c.hdt, dv_yaw)).store(p.grad_v0 + row0, rows);  // + dL/dv_0 (cos 0 = 1)
  from_lanes(a_ga, rows, S, p.grad_accel + offset);
  from_lanes(k_gk, rows, S, p.grad_curvature + offset);
}

// Elements of scratch for either direction (the backward's 7 tiles; the forward uses 3).
template <typename scalar_t>
int64_t scratch_elems(int64_t steps) {
  return 7 * tile_stride<scalar_t>(steps);
}

// ---- row ranges -----------------------------------------------------------------------------

template <typename Params, typename scalar_t, void (*tile_fn)(const Params&, int64_t, int64_t, scalar_t*)>
void rows(const Params& p, int64_t begin, int64_t end, scalar_t* scratch) {
  for (int64_t row = begin; row < end; row += kLanes<scalar_t>) {
    tile_fn(p, row, std::min<int64_t>(kLanes<scalar_t>, end - row), scratch);
  }
}

}  // namespace

template <typename scalar_t>
constexpr KernelSet<scalar_t> kernel_set = {
    kLanes<scalar_t>,
    &scratch_elems<scalar_t>,
    &rows<Rollout<scalar_t>, scalar_t, &forward_tile<scalar_t>>,
    &rows<RolloutGrad<scalar_t>, scalar_t, &backward_tile<scalar_t>>,
};

extern const Kernels kernels;
const Kernels kernels = {
#if defined(CPU_CAPABILITY_AVX512)
    "avx512",
#elif defined(CPU_CAPABILITY_AVX2)
    "avx2",
#else
    "scalar",
#endif
    kernel_set<float>,
    kernel_set<double>,
};

}  // namespace CPU_CAPABILITY
}  // namespace distill::unicycle
