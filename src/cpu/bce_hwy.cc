// bce_hwy.cc: the SIMD binary cross-entropy kernels (on probabilities and with logits, forward and
// backward over contiguous runs), compiled once per target through foreach_target; fills its
// entries of each ISA's kernel table (tables_hwy.cc). Elementwise: no row machinery.
#include "cpu/hwy_targets.h"  // first: the target set

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/bce_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "cpu/log1p-inl.h"
#include "cpu/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
#include "cpu/families-inl.h"

#if XENT_TARGET_HAS_KERNELS

// ---------------------------------------------------------------------------------------------
// binary cross-entropy (elementwise)
//
// Computed in T (float32 for bfloat16 and float16 data, widened exactly; their gradients rounded
// once to nearest even); each element's loss goes out as double. On probabilities: Highway's
// Log / Log1p (<= 4 ulp), the scalar twin's formulas term for term. With logits: the scalar twin's
// rearranged form (kernels_scalar.cc), one exponential e = exp(-|x|) per value (exp-inl.h
// exp_nonpos, <= 0.70 ulp in float, subnormal results kept) and, for the loss, log1p(e) on [0, 1]
// (log1p-inl.h, <= 1.65 ulp, no division); the gradient's sigmoid is 1 / (1 + e) or e / (1 + e).
// A vector holding an input the vector formulas do not reproduce exactly as the scalar twin does
// (BCE: p below the smallest normal number, including 0, or p == 1, where the -100 clamps act; with
// logits: a non-finite x, PyTorch's NaN cases) is handed to the scalar twin whole, as is the tail
// of the run. With logits, 8 vectors go through each stage together (logits_vecs), and a reduced
// forward pass sums in registers (bce_logits_sum).

template <class T>
BceArgs<T> bce_args_at(const BceArgs<T>& a, std::size_t i) noexcept {
  BceArgs<T> b = a;
  b.x += i;
  b.target += i;
  if (b.weight != nullptr) b.weight += i * a.w_step;
  if (b.pos_weight != nullptr) b.pos_weight += i * a.pw_step;
  if (b.elem_loss != nullptr) b.elem_loss += i;
  if (b.dx != nullptr) b.dx += i;
  if (b.dloss != nullptr) b.dloss += i;
  return b;
}

// A broadcast operand: p[i] (step 1) or p[0] (step 0), any storage type (16-bit: widened).
template <class D, class S>
HWY_INLINE hn::Vec<D> load_bcast(D d, const S* p, std::size_t step, std::size_t i) {
  return step == 0 ? hn::Set(d, static_cast<hn::TFromD<D>>(p[0])) : load_u(d, p + i);
}

// Stores L values of T as double at out.
template <class D>
HWY_INLINE void store_as_double(D d, hn::Vec<D> v, double* out) {
  if constexpr (sizeof(hn::TFromD<D>) == 8) {
    hn::StoreU(v, d, out);
  } else {
    const hn::Half<D> dh;
    const hn::Rebind<double, decltype(dh)> dw;
    hn::StoreU(hn::PromoteTo(dw, hn::LowerHalf(dh, v)), dw, out);
    hn::StoreU(hn::PromoteTo(dw, hn::UpperHalf(dh, v)), dw, out + hn::Lanes(dw));
  }
}

// Two float vectors rounded to bfloat16 as rows-inl.h store_u does (nearest even, NaN quieted), in
// one 16-bit store: the rounding bias added in 32-bit lanes and the upper halves gathered by
// ConcatOdd (one pack for two vectors, no shift or saturating demotion per vector).
template <class D>
HWY_INLINE void store_pair_bf16(D d, hn::Vec<D> v0, hn::Vec<D> v1, BF16* p) {
  const hn::RebindToUnsigned<D> du;
  const hn::Repartition<std::uint16_t, D> d16;
  auto rounded = [&](hn::Vec<D> v) {
    const auto b = hn::BitCast(du, v);
    const auto r = hn::Add(b, hn::Add(hn::Set(du, 0x7FFFu), hn::And(hn::ShiftRight<16>(b), hn::Set(du, 1u))));
    return hn::BitCast(d16, hn::IfThenElse(hn::RebindMask(du, hn::IsNaN(v)), hn::Or(b, hn::Set(du, 0x00400000u)), r));
  };
  hn::StoreU(hn::ConcatOdd(d16, rounded(v1), rounded(v0)), d16, reinterpret_cast<std::uint16_t*>(p));
}

template <class S>
void bce(const BceArgs<S>& a, std::size_t n) noexcept {
  using T = compute_t<S>;
  const auto scalar_fn = scalar_table<S>().bce;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t L = hn::Lanes(d);
  const V one = hn::Set(d, T(1));
  const V vscale = hn::Set(d, static_cast<T>(a.dloss_scale));
  std::size_t i = 0;
  for (; i + L <= n; i += L) {
    const V x = load_u(d, a.x + i);
    if (!hn::AllTrue(d, hn::And(hn::Ge(x, hn::Set(d, std::numeric_limits<T>::min())), hn::Lt(x, one)))) {
      scalar_fn(bce_args_at(a, i), L);
      continue;
    }
    const V t = load_u(d, a.target + i);
    const V w = a.weight != nullptr ? load_bcast(d, a.weight, a.w_step, i) : one;
    if (a.elem_loss != nullptr) {
      const V clamp = hn::Set(d, T(-100));
      const V lp = hn::Max(hn::Log(d, x), clamp);
      const V l1p = hn::Max(hn::Log1p(d, hn::Neg(x)), clamp);
      V l = hn::Sub(hn::Mul(hn::Sub(t, one), l1p), hn::Mul(t, lp));
      if (a.weight != nullptr) l = hn::Mul(l, w);
      store_as_double(d, l, a.elem_loss + i);
    }
    if (a.dx != nullptr) {
      const V g = a.dloss != nullptr ? hn::Mul(load_u(d, a.dloss + i), vscale) : vscale;
      // PyTorch's denominator clamp is a float constant even for double data.
      const V eps = hn::Set(d, static_cast<T>(static_cast<double>(1e-12f)));
      V dd = hn::Mul(g, hn::Div(hn::Sub(x, t), hn::Max(hn::Mul(hn::Sub(one, x), x), eps)));
      if (a.weight != nullptr) dd = hn::Mul(dd, w);
      store_u(dd, d, a.dx + i);
    }
  }
  if (i < n) scalar_fn(bce_args_at(a, i), n - i);
}

// With logits: the loss (elem_loss) or the gradient (dx), one pass each; kernels_scalar.cc
// bce_logits states the formulas. Per vector: e = exp(-|x|) once, then
//   loss = (x >= 0 ? 1 - t : pw * t) * |x| + lw * log1p(e)
//   dx   = ((pw * t + 1 - t) * sig - pw * t) * g,  sig = (x >= 0 ? 1 : e) / (1 + e)
// pw = 1, lw = 1 without pos_weight (kPw false). The pointers are copied out of BceArgs so that the
// stores cannot be taken to alias them.
template <class S>
struct LogitsRun {
  const S* x;
  const S* t;
  const S* w;
  std::size_t w_step;
  const S* pw;
  std::size_t pw_step;
  double* loss;
  S* dx;
  const S* dloss;
  compute_t<S> scale;
};

// The K vectors at i, i + L, ..., whose lanes are finite. kWide: some |x| may be at or above
// exp_tiny_bound's magnitude (87 float, 708 double), where e is subnormal and exp_nonpos's
// reduced-range path runs; otherwise every |x| is below it and e is exp_nonpos_normal's. Each step
// runs over the K vectors before the next (K independent exp and log1p chains side by side in the
// instruction stream; one vector's chain of ~50 dependent operations would otherwise fill the
// core's scheduler and leave the FMA units idle); every vector gets the same operations, so the
// bits do not depend on K.
// logits_out leaves the results in out[K]; logits_vecs stores them.
template <std::size_t K, bool kLoss, bool kPw, bool kWide, class D, class S>
HWY_INLINE void logits_out(D d, const LogitsRun<S>& r, std::size_t i, const hn::Vec<D>* x, hn::Vec<D>* out) {
  using T = hn::TFromD<D>;
  using V = hn::Vec<D>;
  const std::size_t L = hn::Lanes(d);
  const V one = hn::Set(d, T(1)), zero = hn::Zero(d);
  V a[K], e[K];
  HWY_UNROLL(8)
  for (std::size_t k = 0; k < K; ++k) {
    a[k] = hn::Abs(x[k]);
    e[k] = kWide ? exp_nonpos<false>(d, hn::Neg(a[k]), zero) : exp_nonpos_normal<false, true>(d, a[k], zero);
  }
  if constexpr (kLoss) {
    HWY_UNROLL(8)
    for (std::size_t k = 0; k < K; ++k) e[k] = log1p_unit(d, e[k]);  // e[k] is now log1p(e)
  }
  HWY_UNROLL(8)
  for (std::size_t k = 0; k < K; ++k) {
    const std::size_t j = i + k * L;
    const V t = load_u(d, r.t + j);
    const auto nonneg = hn::Ge(x[k], zero);
    const V pw = kPw ? load_bcast(d, r.pw, r.pw_step, j) : one;
    if constexpr (kLoss) {
      const V lp = e[k];
      // (1 - t) |x| for x >= 0, (pw t) |x| below: no term cancels (1 - t is exact for t >= 1/2).
      if constexpr (kPw) {
        const V lin = hn::Mul(hn::IfThenElse(nonneg, hn::Sub(one, t), hn::Mul(pw, t)), a[k]);
        out[k] = hn::MulAdd(hn::MulAdd(hn::Sub(pw, one), t, one), lp, lin);
      } else {
        out[k] = hn::MulAdd(hn::IfThenElse(nonneg, hn::Sub(one, t), t), a[k], lp);
      }
    } else {
      const V g = r.dloss != nullptr ? hn::Mul(load_u(d, r.dloss + j), hn::Set(d, r.scale)) : hn::Set(d, r.scale);
      const V sig = hn::Div(hn::IfThenElse(nonneg, one, e[k]), hn::Add(one, e[k]));
      if constexpr (kPw) {
        const V pt = hn::Mul(pw, t);
        out[k] = hn::Mul(hn::Sub(hn::Mul(hn::Sub(hn::Add(pt, one), t), sig), pt), g);
      } else {
        out[k] = hn::Mul(hn::Sub(sig, t), g);
      }
    }
  }
  if (r.w != nullptr) {
    HWY_UNROLL(8)
    for (std::size_t k = 0; k < K; ++k) out[k] = hn::Mul(out[k], load_bcast(d, r.w, r.w_step, i + k * L));
  }
}

template <std::size_t K, bool kLoss, bool kPw, bool kWide, class D, class S>
HWY_INLINE void logits_vecs(D d, const LogitsRun<S>& r, std::size_t i, const hn::Vec<D>* x) {
  const std::size_t L = hn::Lanes(d);
  hn::Vec<D> out[K];
  logits_out<K, kLoss, kPw, kWide>(d, r, i, x, out);
  if constexpr (!kLoss && std::is_same_v<S, BF16> && K % 2 == 0) {
    HWY_UNROLL(8)
    for (std::size_t k = 0; k < K; k += 2) store_pair_bf16(d, out[k], out[k + 1], r.dx + i + k * L);
    return;
  }
  HWY_UNROLL(8)
  for (std::size_t k = 0; k < K; ++k) {
    if constexpr (kLoss) {
      store_as_double(d, out[k], r.loss + i + k * L);
    } else {
      store_u(out[k], d, r.dx + i + k * L);
    }
  }
}

// The scalar twin on elements [i, i + count) of this pass.
template <bool kLoss, class S>
void logits_scalar(const BceArgs<S>& a, std::size_t i, std::size_t count) noexcept {
  BceArgs<S> b = bce_args_at(a, i);
  if constexpr (kLoss) {
    b.dx = nullptr;
  } else {
    b.elem_loss = nullptr;
  }
  scalar_table<S>().bce_logits(b, count);
}

// A vector with some |x| at or above the bound (rare): the reduced-range exponential, or the scalar
// twin when a lane is not finite.
template <bool kLoss, bool kPw, class S>
HWY_NOINLINE void logits_vec_wide(const BceArgs<S>& a, const LogitsRun<S>& r, std::size_t i) {
  const hn::ScalableTag<compute_t<S>> d;
  const hn::Vec<decltype(d)> x = load_u(d, r.x + i);
  if (!hn::AllTrue(d, hn::IsFinite(x))) {
    logits_scalar<kLoss>(a, i, hn::Lanes(d));
    return;
  }
  logits_vecs<1, kLoss, kPw, true>(d, r, i, &x);
}

template <bool kLoss, bool kPw, class S>
void logits_pass(const BceArgs<S>& a, std::size_t n) noexcept {
  using T = compute_t<S>;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t L = hn::Lanes(d);
  const LogitsRun<S> r{a.x,        a.target, a.weight, a.w_step, a.pos_weight,
                       a.pw_step,  a.elem_loss, a.dx,  a.dloss,  static_cast<T>(a.dloss_scale)};
  const V bound = hn::Neg(exp_tiny_bound(d));  // |x| below it: e is a normal number (NaN: false)
  std::size_t i = 0;
  // kSteps vectors per step: independent exp and log1p chains for the core to overlap.
  constexpr std::size_t kSteps = 8;
  for (; i + kSteps * L <= n; i += kSteps * L) {
    V x[kSteps];
    auto in = hn::Lt(hn::Abs(x[0] = load_u(d, r.x + i)), bound);
    HWY_UNROLL(8)
    for (std::size_t k = 1; k < kSteps; ++k) in = hn::And(in, hn::Lt(hn::Abs(x[k] = load_u(d, r.x + i + k * L)), bound));
    if (HWY_LIKELY(hn::AllTrue(d, in))) {
      logits_vecs<kSteps, kLoss, kPw, false>(d, r, i, x);
      continue;
    }
    for (std::size_t j = i; j < i + kSteps * L; j += L) logits_vec_wide<kLoss, kPw>(a, r, j);
  }
  for (; i + L <= n; i += L) {
    const V x = load_u(d, r.x + i);
    if (HWY_UNLIKELY(!hn::AllTrue(d, hn::Lt(hn::Abs(x), bound)))) {
      logits_vec_wide<kLoss, kPw>(a, r, i);
      continue;
    }
    logits_vecs<1, kLoss, kPw, false>(d, r, i, &x);
  }
  if (i < n) logits_scalar<kLoss>(a, i, n - i);
}

template <class S>
void bce_logits(const BceArgs<S>& a, std::size_t n) noexcept {
  const bool pw = a.pos_weight != nullptr;
  if (a.elem_loss != nullptr) pw ? logits_pass<true, true>(a, n) : logits_pass<true, false>(a, n);
  if (a.dx != nullptr) pw ? logits_pass<false, true>(a, n) : logits_pass<false, false>(a, n);
}

// kernels.h sum_terms, as kernels_scalar.cc's sum_terms adds: the eight lanes of the interleaved
// pairwise sums are K = 8 / Lanes vectors (AVX-512: 1, AVX2: 2, SSE4 and NEON: 4), each group of
// 8 terms K unaligned loads; the same adds in the same order, so the same bits.
namespace sum8 {
using D = hn::CappedTag<double, 8>;
constexpr std::size_t kK = 8 / hn::MaxLanes(D());
using V = hn::Vec<D>;

void lanes(const double* v, std::size_t m, V* out) {
  const D d;
  constexpr std::size_t L = 8 / kK;
  if (m <= 8) {
    for (std::size_t k = 0; k < kK; ++k) out[k] = hn::Zero(d);
    for (std::size_t g = 0; g < m; ++g)
      for (std::size_t k = 0; k < kK; ++k) out[k] = hn::Add(out[k], hn::LoadU(d, v + 8 * g + L * k));
    return;
  }
  const std::size_t h = m / 2;
  V hi[kK];
  lanes(v, h, out);
  lanes(v + 8 * h, m - h, hi);
  for (std::size_t k = 0; k < kK; ++k) out[k] = hn::Add(out[k], hi[k]);
}

// The same tree when m is a power of two >= 8 (a full leaf of the front end): every run has 8
// groups; the runs are added in order, then neighbours pairwise, level by level (no recursion, so
// the runs' add chains overlap).
constexpr std::size_t kMaxRuns = 64;
HWY_INLINE void lanes_pow2(const double* v, std::size_t m, V* out) {
  const D d;
  constexpr std::size_t L = 8 / kK;
  V s[kMaxRuns][kK];
  const std::size_t runs = m / 8;
  for (std::size_t r = 0; r < runs; ++r) {
    const double* p = v + 64 * r;
    for (std::size_t k = 0; k < kK; ++k) {
      V a = hn::Add(hn::Zero(d), hn::LoadU(d, p + L * k));
      for (std::size_t g = 1; g < 8; ++g) a = hn::Add(a, hn::LoadU(d, p + 8 * g + L * k));
      s[r][k] = a;
    }
  }
  for (std::size_t w = runs; w > 1; w /= 2)
    for (std::size_t r = 0; r < w / 2; ++r)
      for (std::size_t k = 0; k < kK; ++k) s[r][k] = hn::Add(s[2 * r][k], s[2 * r + 1][k]);
  for (std::size_t k = 0; k < kK; ++k) out[k] = s[0][k];
}
}  // namespace sum8

double sum_terms(const double* v, std::size_t n) noexcept {
  const sum8::D d;
  const std::size_t m = n / 8;
  sum8::V acc[sum8::kK];
  if (m >= 8 && m / 8 <= sum8::kMaxRuns && (m & (m - 1)) == 0) {
    sum8::lanes_pow2(v, m, acc);
  } else {
    sum8::lanes(v, m, acc);
  }
  HWY_ALIGN double s[8];
  for (std::size_t k = 0; k < sum8::kK; ++k) hn::Store(acc[k], d, s + k * (8 / sum8::kK));
  double total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (std::size_t i = 8 * m; i < n; ++i) total += v[i];
  return total;
}

// kernels.h bce_logits_sum. For n = 64 * 2^k, sum_terms' tree is: runs of 8 groups of 8 terms (64
// terms), each run's groups added in order into kK vectors of the eight lanes, then the runs added
// pairwise, neighbours first. So each run of 64 losses is computed in registers (logits_out, when
// every |x| of the run is below exp_tiny_bound's magnitude; otherwise bce_logits on the run into
// a 64-term buffer), widened to double and added into its lanes in order; the run sums are then
// added pairwise, level by level, as sum_terms does. Other n: bce_logits into a buffer, then
// sum_terms.
template <bool kPw, class S>
double logits_sum(const BceArgs<S>& a, std::size_t n) noexcept {
  using T = compute_t<S>;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  constexpr std::size_t L = hn::MaxLanes(d);
  constexpr std::size_t kRun = 64;
  const std::size_t runs = n / kRun;
  if (L != hn::Lanes(d) || kRun % L != 0 || n % kRun != 0 || runs == 0 || (runs & (runs - 1)) != 0 ||
      n > kBceSumMaxTerms) {
    double buf[kBceSumMaxTerms];
    BceArgs<S> b = a;
    b.elem_loss = buf;
    b.dx = nullptr;
    logits_pass<true, kPw>(b, n);
    return sum_terms(buf, n);
  }
  const sum8::D dd;
  using V8 = sum8::V;
  constexpr std::size_t kK = sum8::kK, L8 = 8 / kK;
  constexpr std::size_t kVecs = kRun / L;                   // loss vectors per run
  constexpr std::size_t kStep = kVecs < 8 ? kVecs : 8;      // per logits_out call
  constexpr std::size_t kHalves = sizeof(T) == 4 ? 2 : 1;  // double vectors per loss vector
  static_assert(L == kHalves * L8, "a loss vector widens to kHalves vectors of the sum's lanes");
  const LogitsRun<S> r{a.x,       a.target, a.weight, a.w_step, a.pos_weight,
                       a.pw_step, nullptr,  nullptr,  nullptr,  T(1)};
  const V bound = hn::Neg(exp_tiny_bound(d));
  V8 sums[kBceSumMaxTerms / kRun][kK];
  for (std::size_t run = 0; run < runs; ++run) {
    const std::size_t e = run * kRun;
    V8 cur[kK];
    for (std::size_t k = 0; k < kK; ++k) cur[k] = hn::Zero(dd);
    bool fast = true;
    for (std::size_t s = 0; s < kVecs; s += kStep) {
      V x[kStep], out[kStep];
      auto in = hn::Lt(hn::Abs(x[0] = load_u(d, r.x + e + s * L)), bound);
      HWY_UNROLL(8)
      for (std::size_t k = 1; k < kStep; ++k) in = hn::And(in, hn::Lt(hn::Abs(x[k] = load_u(d, r.x + e + (s + k) * L)), bound));
      if (HWY_UNLIKELY(!hn::AllTrue(d, in))) {
        fast = false;
        break;
      }
      logits_out<kStep, true, kPw, false>(d, r, e + s * L, x, out);
      HWY_UNROLL(8)
      for (std::size_t k = 0; k < kStep; ++k) {
        const std::size_t q = (s + k) * kHalves;  // index of the loss vector's first double vector in the run
        if constexpr (sizeof(T) == 8) {
          cur[q % kK] = hn::Add(cur[q % kK], out[k]);
        } else {
          const hn::Half<decltype(d)> dh;
          const hn::Rebind<double, decltype(dh)> dw;
          cur[q % kK] = hn::Add(cur[q % kK], hn::PromoteTo(dw, hn::LowerHalf(dh, out[k])));
          cur[(q + 1) % kK] = hn::Add(cur[(q + 1) % kK], hn::PromoteTo(dw, hn::UpperHalf(dh, out[k])));
        }
      }
    }
    if (HWY_UNLIKELY(!fast)) {
      for (std::size_t k = 0; k < kK; ++k) cur[k] = hn::Zero(dd);
      double buf[kRun];
      BceArgs<S> b = bce_args_at(a, e);
      b.elem_loss = buf;
      b.dx = nullptr;
      logits_pass<true, kPw>(b, kRun);
      for (std::size_t q = 0; q < kRun / L8; ++q) cur[q % kK] = hn::Add(cur[q % kK], hn::LoadU(dd, buf + q * L8));
    }
    for (std::size_t k = 0; k < kK; ++k) sums[run][k] = cur[k];
  }
  for (std::size_t w = runs; w > 1; w /= 2)
    for (std::size_t j = 0; j < w / 2; ++j)
      for (std::size_t k = 0; k < kK; ++k) sums[j][k] = hn::Add(sums[2 * j][k], sums[2 * j + 1][k]);
  HWY_ALIGN double lanes[8];
  for (std::size_t k = 0; k < kK; ++k) hn::Store(sums[0][k], dd, lanes + k * L8);
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

template <class S>
double bce_logits_sum(const BceArgs<S>& a, std::size_t n) noexcept {
  return a.pos_weight != nullptr ? logits_sum<true>(a, n) : logits_sum<false>(a, n);
}

// Test hook (kernels.h log1p_unit).
template <class T>
void log1p_unit_n(const T* x, T* y, std::size_t n) noexcept {
  const hn::ScalableTag<T> d;
  const std::size_t L = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + L <= n; i += L) hn::StoreU(log1p_unit(d, hn::LoadU(d, x + i)), d, y + i);
  if (i < n) {
    HWY_ALIGN T buf[kMaxLanesBytes / sizeof(T)] = {};
    for (std::size_t k = 0; k < n - i; ++k) buf[k] = x[i + k];
    hn::Store(log1p_unit(d, hn::Load(d, buf)), d, buf);
    for (std::size_t k = 0; k < n - i; ++k) y[i + k] = buf[k];
  }
}

template <class T>
void fill_bce_t(KernelTable<T>* t) noexcept {
  t->bce = &bce<T>;
  t->bce_logits = &bce_logits<T>;
  t->sum_terms = &sum_terms;
  t->log1p_unit = &log1p_unit_n<T>;
  t->bce_logits_sum = &bce_logits_sum<T>;
}
void fill_bce(KernelTable<float>* t) noexcept { fill_bce_t(t); }
void fill_bce(KernelTable<double>* t) noexcept { fill_bce_t(t); }
// bfloat16 and float16: computed in float32 on the exactly widened values, dx rounded once to
// nearest even (losses leave as double).
template <class S>
void fill_bce_half(KernelTable<S>* t) noexcept {
  t->bce = &bce<S>;
  t->bce_logits = &bce_logits<S>;
  t->sum_terms = &sum_terms;
  t->bce_logits_sum = &bce_logits_sum<S>;
}
void fill_bce(KernelTable<BF16>* t) noexcept { fill_bce_half(t); }
void fill_bce(KernelTable<F16>* t) noexcept { fill_bce_half(t); }

#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();
