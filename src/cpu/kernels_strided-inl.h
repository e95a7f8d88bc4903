// kernels_strided-inl.h: the SIMD kernels for blocks whose class dimension is not last (Block
// stride != 1: (N, C, d1, ...) as in segmentation) -- the softmax family forward and backward,
// cross-entropy with class indices and with probabilities, NLL, and the token statistics (through
// rows-inl.h ce_stats_cols) -- for the foreach_target passes of softmax_hwy.cc
// and cross_entropy_hwy.cc (float32, float64) and of half_hwy.cc (bfloat16, float16: each value
// widened exactly to float32 on load and rounded once at the store, rows-inl.h load_u / store_u).
// It is included from inside their xent::cpu::HWY_NAMESPACE, after rows-inl.h, whose helpers it
// uses (exp_diff, load_padded, load_wide, store_narrow, ...); it includes nothing and is no header
// of its own. Contiguous rows (stride 1) are not handled here.
//
// Layout (kernels.h): element (o, c, i) at base[o * C * stride + c * stride + i], so for fixed o and
// c the n_inner rows of a block are contiguous: a vector of L = Lanes(T) inner positions ("a group")
// reads column c with one load, each row is one lane, and every per-row quantity (max, sum of exps,
// target) is one vector, as the short-row tiles of rows-inl.h hold them, without a transpose.
// The last group of each o may hold n < L rows: its columns are copied through padded stack buffers
// (pads 0, never stored; nothing is read or written outside the block).
//
// Per row the arithmetic is the contiguous kernels': m = max, e = exp(x - m) (exp_diff, TwoSum'd
// argument for values written out), sums in float64 lanes, per-row scalars in double. A group whose
// rows the vector formulas do not cover (a NaN, a +inf, an all -inf row; cross-entropy: a non-finite
// x[t], a -inf with label smoothing) is detected before anything is written (outputs may alias
// inputs) and redone row by row: each row as a group of one (the same lane arithmetic, so the same
// bits), and the rows that still fail by the scalar twin on Block{1, C, 1, stride}. Hence a row's
// result never depends on which rows share its group, and any split of rows across threads gives the
// same bits.
//
// Cost model: softmax (and the cross-entropy gradient) keep e in the output when a group's columns
// fit in kOneExpRowBytes (one exp per value, the output reread from cache); otherwise, and always
// for the 16-bit types (whose output would round e before it is scaled), e is recomputed in the
// last pass. Per-row results computed in double (logsumexp, the cross-entropy target entry) are
// rounded once from double into the storage type.

#if defined(XENT_CPU_STRIDED_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_CPU_STRIDED_INL_H_
#undef XENT_CPU_STRIDED_INL_H_
#else
#define XENT_CPU_STRIDED_INL_H_
#endif

// One column of a group: n = Lanes values at p (kFull) or the n < Lanes ones, padded with 0; any
// storage type St, as compute-type lanes (16-bit values widened exactly, rows-inl.h load_u).
template <bool kFull, class D, class St>
HWY_INLINE hn::Vec<D> col_load(D d, const St* p, std::size_t n) {
  using T = hn::TFromD<D>;
  if constexpr (kFull) {
    (void)n;
    return load_u(d, p);
  } else {
    return load_padded(d, p, n, T(0));
  }
}

// The first n lanes (all with kFull) stored at p, rounded once into St (rows-inl.h store_u).
template <bool kFull, class D, class St>
HWY_INLINE void col_store(D d, hn::Vec<D> v, St* p, std::size_t n) {
  using T = hn::TFromD<D>;
  if constexpr (kFull) {
    (void)n;
    store_u(v, d, p);
  } else {
    HWY_ALIGN T buf[kMaxLanesBytes / sizeof(T)];
    hn::Store(v, d, buf);
    for (std::size_t k = 0; k < n; ++k) p[k] = static_cast<St>(buf[k]);
  }
}

// Per-lane float64 sums of T vectors (float lanes promoted in two halves); store() writes Lanes(T)
// doubles, lane order kept.
template <class T> struct LaneSums;

template <>
struct LaneSums<double> {
  using D = hn::ScalableTag<double>;
  using V = hn::Vec<D>;
  V acc;
  HWY_INLINE LaneSums() : acc(hn::Zero(D())) {}
  HWY_INLINE void add(V v) { acc = hn::Add(acc, v); }
  HWY_INLINE void add_mul(V a, V b) { acc = hn::MulAdd(a, b, acc); }
  // w * (x - m), the subtraction in double.
  HWY_INLINE void add_shifted_mul(V x, V m, double w) { acc = hn::MulAdd(hn::Set(D(), w), hn::Sub(x, m), acc); }
  // c * (x - m) per lane, the subtraction in double.
  HWY_INLINE void add_coef_shifted(V c, V x, V m) { acc = hn::MulAdd(c, hn::Sub(x, m), acc); }
  HWY_INLINE void store(double* out) const { hn::Store(acc, D(), out); }
};

template <>
struct LaneSums<float> {
  using D = hn::ScalableTag<float>;
  using DH = hn::Half<D>;
  using DW = hn::ScalableTag<double>;
  using V = hn::Vec<D>;
  using VW = hn::Vec<DW>;
  VW lo, hi;
  HWY_INLINE LaneSums() : lo(hn::Zero(DW())), hi(hn::Zero(DW())) {}
  static HWY_INLINE VW lower(V v) { return hn::PromoteTo(DW(), hn::LowerHalf(DH(), v)); }
  static HWY_INLINE VW upper(V v) { return hn::PromoteTo(DW(), hn::UpperHalf(DH(), v)); }
  HWY_INLINE void add(V v) {
    lo = hn::Add(lo, lower(v));
    hi = hn::Add(hi, upper(v));
  }
  // a * b in float64 (exact product of two floats).
  HWY_INLINE void add_mul(V a, V b) {
    lo = hn::MulAdd(lower(a), lower(b), lo);
    hi = hn::MulAdd(upper(a), upper(b), hi);
  }
  // w * (x - m) in float64, where x - m is exact.
  HWY_INLINE void add_shifted_mul(V x, V m, double w) {
    const VW vw = hn::Set(DW(), w);
    lo = hn::MulAdd(vw, hn::Sub(lower(x), lower(m)), lo);
    hi = hn::MulAdd(vw, hn::Sub(upper(x), upper(m)), hi);
  }
  // c * (x - m) per lane in float64 (c and x - m exact in double, one rounding of the product-sum).
  HWY_INLINE void add_coef_shifted(V c, V x, V m) {
    lo = hn::MulAdd(lower(c), hn::Sub(lower(x), lower(m)), lo);
    hi = hn::MulAdd(upper(c), hn::Sub(upper(x), upper(m)), hi);
  }
  HWY_INLINE void store(double* out) const {
    hn::Store(lo, DW(), out);
    hn::Store(hi, DW(), out + hn::Lanes(DW()));
  }
};

// Whether a group's C columns (one vector each) fit in the one-exp scheme's bound. Never for the
// 16-bit types: their output cannot hold e unrounded, so they recompute it.
template <class St>
HWY_INLINE bool strided_one_exp(std::size_t C) {
  using T = compute_t<St>;
  if constexpr (::xent::detail::kIsHalf<St>) return false;
  else return C * hn::Lanes(hn::ScalableTag<T>()) * sizeof(T) <= kOneExpRowBytes;
}

// Runs group(o, i0, n, full) over a block: full groups of Lanes rows, then the n < Lanes rows left
// of each o. group returns false (having written nothing) when some row needs other handling; its
// rows are then redone one by one as groups of one, and a row that still fails by row_scalar(o, i).
template <class T, class Group, class RowScalar>
HWY_INLINE void for_each_group(const Block& b, const Group& group, const RowScalar& row_scalar) {
  const std::size_t L = hn::Lanes(hn::ScalableTag<T>());
  auto redo = [&](std::size_t o, std::size_t i0, std::size_t n) HWY_ATTR {
    for (std::size_t i = i0; i < i0 + n; ++i)
      if (!group(o, i, 1, std::false_type())) row_scalar(o, i);
  };
  for (std::size_t o = 0; o < b.n_outer; ++o) {
    std::size_t i0 = 0;
    for (; i0 + L <= b.n_inner; i0 += L)
      if (!group(o, i0, L, std::true_type())) redo(o, i0, L);
    if (i0 < b.n_inner) {
      const std::size_t n = b.n_inner - i0;
      if (!group(o, i0, n, std::false_type())) {
        if (n > 1) redo(o, i0, n);
        else row_scalar(o, i0);
      }
    }
  }
}

// Per-lane max of a group's rows (x at the group's column 0, columns `s` apart); false when a lane
// holds a NaN, a +inf or only -inf. Max may drop a NaN: tracked on the side.
template <bool kFull, class St, class T = compute_t<St>>
HWY_INLINE bool group_max(const St* x, std::size_t C, std::size_t s, std::size_t n, hn::Vec<hn::ScalableTag<T>>* m_out) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  V m0 = hn::Set(d, -kInf<T>), m1 = m0;
  auto nan = hn::FirstN(d, 0);
  std::size_t c = 0;
  for (; c + 2 <= C; c += 2) {
    const V v0 = col_load<kFull>(d, x + c * s, n), v1 = col_load<kFull>(d, x + (c + 1) * s, n);
    m0 = hn::Max(m0, v0);
    m1 = hn::Max(m1, v1);
    nan = hn::Or(nan, hn::Or(hn::IsNaN(v0), hn::IsNaN(v1)));
  }
  if (c < C) {
    const V v = col_load<kFull>(d, x + c * s, n);
    m0 = hn::Max(m0, v);
    nan = hn::Or(nan, hn::IsNaN(v));
  }
  const V m = hn::Max(m0, m1);
  *m_out = m;
  return hn::AllFalse(d, nan) && hn::AllTrue(d, hn::IsFinite(m));
}

// ---------------------------------------------------------------------------------------------
// softmax family

// softmax (kLog false) and log_softmax (kLog true) of one group; y may alias x.
template <bool kFull, bool kLog, bool kKeep, class St>
HWY_INLINE bool strided_softmax_group(const St* x, St* y, std::size_t C, std::size_t s, std::size_t n) {
  using T = compute_t<St>;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  V m;
  if (!group_max<kFull>(x, C, s, n, &m)) return false;
  LaneSums<T> acc;
  for (std::size_t c = 0; c < C; ++c) {
    if constexpr (!kLog && kKeep) {
      const V e = exp_diff<kExactOut>(d, col_load<kFull>(d, x + c * s, n), m);
      col_store<kFull>(d, e, y + c * s, n);
      acc.add(e);
    } else {
      acc.add(exp_diff<kExactSum>(d, col_load<kFull>(d, x + c * s, n), m));
    }
  }
  HWY_ALIGN double S[kL];
  HWY_ALIGN T a[kL];
  acc.store(S);
  // As the contiguous kernels: softmax y = e * T(1 / S); log_softmax y = (x - m) - T(log S).
  for (std::size_t k = 0; k < L; k += LD)
    store_narrow(kLog ? hn::Log(dd, hn::Load(dd, S + k)) : hn::Div(hn::Set(dd, 1.0), hn::Load(dd, S + k)), a + k);
  const V va = hn::Load(d, a);
  for (std::size_t c = 0; c < C; ++c) {
    V out;
    if constexpr (kLog) out = hn::Sub(hn::Sub(col_load<kFull>(d, x + c * s, n), m), va);
    else if constexpr (kKeep) out = hn::Mul(col_load<kFull>(d, y + c * s, n), va);
    else out = hn::Mul(exp_diff<kExactOut>(d, col_load<kFull>(d, x + c * s, n), m), va);
    col_store<kFull>(d, out, y + c * s, n);
  }
  return true;
}

template <class St, bool kLog>
void strided_softmax_like_fwd(const St* x, St* y, Block b) noexcept {
  const auto& scalar = scalar_table<St>();
  const auto scalar_fn = kLog ? scalar.log_softmax_fwd : scalar.softmax_fwd;
  const std::size_t C = b.C, s = b.stride;
  const bool keep = strided_one_exp<St>(C);
  auto group = [&](std::size_t o, std::size_t i0, std::size_t n, auto full) HWY_ATTR {
    constexpr bool kFull = decltype(full)::value;
    const std::size_t off = o * C * s + i0;
    if constexpr (!::xent::detail::kIsHalf<St>) {
      if (keep) return strided_softmax_group<kFull, kLog, true>(x + off, y + off, C, s, n);
    }
    return strided_softmax_group<kFull, kLog, false>(x + off, y + off, C, s, n);
  };
  auto row_scalar = [&](std::size_t o, std::size_t i) HWY_ATTR {
    const std::size_t off = o * C * s + i;
    scalar_fn(x + off, y + off, Block{1, C, 1, s});
  };
  for_each_group<compute_t<St>>(b, group, row_scalar);
}

template <class St>
void strided_softmax_fwd(const St* x, St* y, Block b) noexcept { strided_softmax_like_fwd<St, false>(x, y, b); }
template <class St>
void strided_log_softmax_fwd(const St* x, St* y, Block b) noexcept { strided_softmax_like_fwd<St, true>(x, y, b); }

// lse = St(m + log S) per row (rounded once from double), at lse[o * stride + i].
template <class St>
void strided_logsumexp_fwd(const St* x, St* lse, Block b) noexcept {
  using T = compute_t<St>;
  const std::size_t C = b.C, s = b.stride;
  auto group = [&](std::size_t o, std::size_t i0, std::size_t n, auto full) HWY_ATTR {
    constexpr bool kFull = decltype(full)::value;
    const hn::ScalableTag<T> d;
    const hn::ScalableTag<double> dd;
    constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
    const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
    const St* xg = x + o * C * s + i0;
    hn::Vec<decltype(d)> m;
    if (!group_max<kFull>(xg, C, s, n, &m)) return false;
    LaneSums<T> acc;
    for (std::size_t c = 0; c < C; ++c) acc.add(exp_diff<kExactSum>(d, col_load<kFull>(d, xg + c * s, n), m));
    HWY_ALIGN double S[kL], out[kL];
    HWY_ALIGN T mb[kL];
    acc.store(S);
    hn::Store(m, d, mb);
    for (std::size_t k = 0; k < L; k += LD)
      hn::Store(hn::Add(load_wide(mb + k), hn::Log(dd, hn::Load(dd, S + k))), dd, out + k);
    for (std::size_t lane = 0; lane < n; ++lane) lse[o * s + i0 + lane] = static_cast<St>(out[lane]);
    return true;
  };
  auto row_scalar = [&](std::size_t o, std::size_t i) HWY_ATTR {
    scalar_table<St>().logsumexp_fwd(x + o * C * s + i, lse + o * s + i, Block{1, C, 1, s});
  };
  for_each_group<T>(b, group, row_scalar);
}

// softmax_bwd: dx = y (dy - T(dot)), dot = sum y dy in double; log_softmax_bwd: dx = dy - exp(y)
// T(sum), sum = sum dy in double (the contiguous kernels' expressions). No row needs the scalar
// twin: NaN and infinities propagate through the same operations.
template <class St, bool kLog>
void strided_softmax_like_bwd(const St* y, const St* dy, St* dx, Block b) noexcept {
  using T = compute_t<St>;
  const std::size_t C = b.C, s = b.stride;
  auto group = [&](std::size_t o, std::size_t i0, std::size_t n, auto full) HWY_ATTR {
    constexpr bool kFull = decltype(full)::value;
    const hn::ScalableTag<T> d;
    using V = hn::Vec<decltype(d)>;
    const hn::ScalableTag<double> dd;
    constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
    const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
    const std::size_t off = o * C * s + i0;
    const St* yg = y + off;
    const St* dyg = dy + off;
    St* dxg = dx + off;
    LaneSums<T> acc;
    for (std::size_t c = 0; c < C; ++c) {
      if constexpr (kLog) acc.add(col_load<kFull>(d, dyg + c * s, n));
      else acc.add_mul(col_load<kFull>(d, yg + c * s, n), col_load<kFull>(d, dyg + c * s, n));
    }
    HWY_ALIGN double S[kL];
    HWY_ALIGN T a[kL];
    acc.store(S);
    for (std::size_t k = 0; k < L; k += LD) store_narrow(hn::Load(dd, S + k), a + k);
    const V va = hn::Load(d, a), zero = hn::Zero(d);
    for (std::size_t c = 0; c < C; ++c) {
      const V yv = col_load<kFull>(d, yg + c * s, n), dyv = col_load<kFull>(d, dyg + c * s, n);
      const V out = kLog ? hn::NegMulAdd(exp_diff_any(d, yv, zero), va, dyv) : hn::Mul(yv, hn::Sub(dyv, va));
      col_store<kFull>(d, out, dxg + c * s, n);
    }
    return true;
  };
  auto row_scalar = [](std::size_t, std::size_t) {};
  for_each_group<T>(b, group, row_scalar);
}

template <class St>
void strided_softmax_bwd(const St* y, const St* dy, St* dx, Block b) noexcept {
  strided_softmax_like_bwd<St, false>(y, dy, dx, b);
}
template <class St>
void strided_log_softmax_bwd(const St* y, const St* dy, St* dx, Block b) noexcept {
  strided_softmax_like_bwd<St, true>(y, dy, dx, b);
}

// logsumexp_bwd: dx = exp(x - lse) * dlse per row (the contiguous kernels' expression, lse and dlse
// taken in the compute type). A group with a row whose lse is not finite is redone row by row, and
// such a row runs the scalar twin (its exp(x - lse) is the defined value there).
template <class St>
void strided_logsumexp_bwd(const St* x, const St* lse, const St* dlse, St* dx, Block b) noexcept {
  using T = compute_t<St>;
  const std::size_t C = b.C, s = b.stride;
  auto group = [&](std::size_t o, std::size_t i0, std::size_t n, auto full) HWY_ATTR {
    constexpr bool kFull = decltype(full)::value;
    const hn::ScalableTag<T> d;
    using V = hn::Vec<decltype(d)>;
    constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
    HWY_ALIGN T lb[kL] = {}, gb[kL] = {};
    for (std::size_t lane = 0; lane < n; ++lane) {
      lb[lane] = static_cast<T>(lse[o * s + i0 + lane]);
      gb[lane] = static_cast<T>(dlse[o * s + i0 + lane]);
      if (!std::isfinite(lb[lane])) return false;
    }
    const V vl = hn::Load(d, lb), vg = hn::Load(d, gb);
    const std::size_t off = o * C * s + i0;
    for (std::size_t c = 0; c < C; ++c)
      col_store<kFull>(d, hn::Mul(exp_diff_any(d, col_load<kFull>(d, x + off + c * s, n), vl), vg), dx + off + c * s, n);
    return true;
  };
  auto row_scalar = [&](std::size_t o, std::size_t i) HWY_ATTR {
    const std::size_t off = o * C * s + i;
    scalar_table<St>().logsumexp_bwd(x + off, lse + o * s + i, dlse + o * s + i, dx + off, Block{1, C, 1, s});
  };
  for_each_group<T>(b, group, row_scalar);
}

// ---------------------------------------------------------------------------------------------
// cross-entropy with class indices
//
// loss = (1 - eps) w[t] (lse - x[t]) + eps/C (W log S - sum_c w[c] (x[c] - m))
// dx   = g ((1 - eps) w[t] (p - [c == t]) + eps/C (W p - w[c])),  W = sum_c w[c]
// with the normaliser summed as S_o (every column but the target's) plus e[t], so that
// p[t] - 1 = -S_o / S keeps its relative accuracy as p[t] -> 1 (ce_index_small_plain's scheme).
// Ignored rows: loss 0, dx 0 (a row whose normaliser is not finite goes to the scalar twin, whose
// 0 * p is NaN there).

template <bool kFull, bool kKeep, class St, class I>
HWY_INLINE bool strided_ce_group(const CeIndexArgs<St, I>& a, std::size_t C, std::size_t s, std::size_t n_inner,
                                 std::size_t o, std::size_t i0, std::size_t n) {
  using T = compute_t<St>;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::RebindToSigned<decltype(d)> di;
  using TI = hn::TFromD<decltype(di)>;
  const hn::ScalableTag<double> dd;
  using VD = hn::Vec<decltype(dd)>;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  const double eps = a.smoothing;
  const double Cd = static_cast<double>(C);
  const double W = a.weight_sum;
  const St* x = a.x + o * C * s + i0;
  St* dx = a.dx != nullptr ? a.dx + o * C * s + i0 : nullptr;
  const std::size_t ro = o * s + i0;  // per-row inputs (target, dloss)

  // Per lane: the target (-1 when ignored, and in the pads), its weight (0 when ignored), the
  // upstream gradient.
  HWY_ALIGN TI tg[kL];
  HWY_ALIGN T wt[kL], dl[kL], rw[kL];
  for (std::size_t lane = 0; lane < L; ++lane) {
    tg[lane] = -1;
    wt[lane] = T(0);
    dl[lane] = T(0);
    rw[lane] = T(0);
    if (lane >= n) continue;
    const std::int64_t t = static_cast<std::int64_t>(a.target[ro + lane]);
    if (a.dloss != nullptr) dl[lane] = static_cast<T>(a.dloss[ro + lane]);
    if (a.row_weight != nullptr) rw[lane] = static_cast<T>(a.row_weight[ro + lane]);
    if (t == a.ignore_index) continue;
    tg[lane] = static_cast<TI>(t);
    wt[lane] = a.weight != nullptr ? static_cast<T>(a.weight[t]) : T(1);
  }
  const auto vt = hn::Load(di, tg);
  const auto kept = hn::RebindMask(d, hn::Gt(vt, hn::Set(di, TI(-1))));
  const auto one_i = hn::Set(di, TI(1));

  // Pass 1: max, x[t], and what sends a lane elsewhere.
  V m0 = hn::Set(d, -kInf<T>), m1 = m0, xt = hn::Zero(d);
  auto nan = hn::FirstN(d, 0), ninf = nan;
  {
    auto vc = hn::Zero(di);
    for (std::size_t c = 0; c < C; ++c, vc = hn::Add(vc, one_i)) {
      const V v = col_load<kFull>(d, x + c * s, n);
      if (c % 2 == 0) m0 = hn::Max(m0, v);
      else m1 = hn::Max(m1, v);
      nan = hn::Or(nan, hn::IsNaN(v));
      if (eps != 0) ninf = hn::Or(ninf, hn::Eq(v, hn::Set(d, -kInf<T>)));
      xt = hn::IfThenElse(hn::RebindMask(d, hn::Eq(vt, vc)), v, xt);
    }
  }
  const V m = hn::Max(m0, m1);
  auto bad = hn::Or(nan, hn::Not(hn::IsFinite(m)));
  bad = hn::Or(bad, hn::And(kept, hn::Not(hn::IsFinite(xt))));
  if (eps != 0) bad = hn::Or(bad, hn::And(kept, ninf));
  if (!hn::AllFalse(d, bad)) return false;

  // Pass 2: e = exp(x - m) (kept in dx with kKeep), S_o, e[t], and sum_c w[c] (x[c] - m).
  V et = hn::Zero(d);
  LaneSums<T> so, A;
  {
    auto vc = hn::Zero(di);
    for (std::size_t c = 0; c < C; ++c, vc = hn::Add(vc, one_i)) {
      const V v = col_load<kFull>(d, x + c * s, n);
      const V e = exp_diff<kKeep ? kExactOut : kExactSum>(d, v, m);
      if constexpr (kKeep) col_store<kFull>(d, e, dx + c * s, n);
      const auto is_t = hn::RebindMask(d, hn::Eq(vt, vc));
      et = hn::IfThenElse(is_t, e, et);
      so.add(hn::IfThenZeroElse(is_t, e));
      if (eps != 0) A.add_shifted_mul(v, m, a.weight != nullptr ? as_double(a.weight[c]) : 1.0);
    }
  }

  // Per-row scalars, LD lanes at a time in double.
  HWY_ALIGN double Sob[kL], Ab[kL], lossb[kL], tgd[kL];
  HWY_ALIGN T mb[kL], xtb[kL], etb[kL], scaleb[kL], tgb[kL], bbb[kL], keepb[kL];
  so.store(Sob);
  if (eps != 0) A.store(Ab);
  hn::Store(m, d, mb);
  hn::Store(xt, d, xtb);
  hn::Store(et, d, etb);
  hn::Store(hn::IfThenElseZero(kept, hn::Set(d, T(1))), d, keepb);
  const VD vscale = hn::Set(dd, a.dloss_scale);
  const VD keep_h = hn::Set(dd, 1 - eps), soft = hn::Set(dd, eps / Cd), vW = hn::Set(dd, W);
  for (std::size_t k = 0; k < L; k += LD) {
    const auto kd = hn::Ne(load_wide(keepb + k), hn::Zero(dd));
    const VD sod = hn::Load(dd, Sob + k);
    const VD S = hn::Add(sod, load_wide(etb + k));
    const VD logS = hn::Log(dd, S);
    const VD wtd = load_wide(wt + k);
    if (a.row_loss != nullptr) {
      const VD lse = hn::Add(load_wide(mb + k), logS);
      VD loss = hn::Mul(wtd, hn::Sub(lse, load_wide(xtb + k)));
      if (eps != 0) loss = hn::MulAdd(keep_h, loss, hn::Mul(soft, hn::Sub(hn::Mul(vW, logS), hn::Load(dd, Ab + k))));
      hn::Store(hn::IfThenElseZero(kd, loss), dd, lossb + k);
    }
    if (dx == nullptr) continue;
    VD g = a.dloss != nullptr ? hn::Mul(vscale, load_wide(dl + k)) : vscale;  // row_upstream's order
    if (a.row_weight != nullptr) g = hn::Mul(g, load_wide(rw + k));
    const VD pm1 = hn::Sub(hn::Zero(dd), hn::Div(sod, S));  // p[t] - 1, +0 (as expm1(0)) when p[t] = 1
    const VD coef = eps != 0 ? hn::MulAdd(keep_h, wtd, hn::Mul(soft, vW)) : wtd;  // multiplies p
    store_narrow(hn::IfThenElseZero(kd, hn::Div(hn::Mul(g, coef), S)), scaleb + k);
    VD dt = eps != 0 ? hn::Mul(hn::Mul(keep_h, wtd), pm1) : hn::Mul(wtd, pm1);
    if (eps != 0) dt = hn::MulAdd(soft, hn::Sub(hn::Mul(vW, hn::Add(pm1, hn::Set(dd, 1.0))), wtd), dt);
    const VD tgv = hn::IfThenElseZero(kd, hn::Mul(g, dt));
    store_narrow(tgv, tgb + k);
    if constexpr (::xent::detail::kIsHalf<St>) hn::Store(tgv, dd, tgd + k);
    store_narrow(hn::IfThenElseZero(kd, hn::Mul(g, soft)), bbb + k);
  }
  if (a.row_loss != nullptr) {
    double* rl = a.row_loss + o * n_inner + i0;
    for (std::size_t lane = 0; lane < n; ++lane) rl[lane] = lossb[lane];
  }
  if (dx == nullptr) return true;

  // Pass 3: dx = e * scale (- w[c] g eps / C), the target's entry apart.
  const V vs = hn::Load(d, scaleb), vg = hn::Load(d, tgb), vb = hn::Load(d, bbb);
  auto vc = hn::Zero(di);
  for (std::size_t c = 0; c < C; ++c, vc = hn::Add(vc, one_i)) {
    const V e = kKeep ? col_load<kFull>(d, dx + c * s, n)
                      : exp_diff<kExactOut>(d, col_load<kFull>(d, x + c * s, n), m);
    V p = hn::Mul(e, vs);
    if (eps != 0) p = hn::NegMulAdd(hn::Set(d, a.weight != nullptr ? static_cast<T>(a.weight[c]) : T(1)), vb, p);
    col_store<kFull>(d, hn::IfThenElse(hn::RebindMask(d, hn::Eq(vt, vc)), vg, p), dx + c * s, n);
  }
  if constexpr (::xent::detail::kIsHalf<St>) {
    // The target's entry rounded once from double into the 16-bit type, not through float.
    for (std::size_t lane = 0; lane < n; ++lane)
      if (tg[lane] >= 0) dx[static_cast<std::size_t>(tg[lane]) * s + lane] = static_cast<St>(tgd[lane]);
  }
  return true;
}

template <class St, class I>
void strided_ce_index(const CeIndexArgs<St, I>& a, Block b) noexcept {
  using T = compute_t<St>;
  const auto& scalar = scalar_table<St>();
  auto* scalar_fn = [&] {
    if constexpr (sizeof(I) == 4) return scalar.ce_index_i32;
    else return scalar.ce_index_i64;
  }();
  const std::size_t C = b.C, s = b.stride;
  // Class indices are compared as T-sized integers; smoothing sums need finite weights (the scalar
  // twin's NaN / inf otherwise).
  using TI = hn::TFromD<hn::RebindToSigned<hn::ScalableTag<T>>>;
  bool vector_ok = C <= static_cast<std::size_t>(std::numeric_limits<TI>::max());
  if (vector_ok && a.smoothing != 0 && a.weight != nullptr)
    for (std::size_t c = 0; c < C && vector_ok; ++c) vector_ok = std::isfinite(as_double(a.weight[c]));
  if (!vector_ok || !std::isfinite(a.weight_sum)) return scalar_fn(a, b);
  const bool keep = a.dx != nullptr && strided_one_exp<St>(C);
  auto group = [&](std::size_t o, std::size_t i0, std::size_t n, auto full) HWY_ATTR {
    constexpr bool kFull = decltype(full)::value;
    if constexpr (!::xent::detail::kIsHalf<St>) {
      if (keep) return strided_ce_group<kFull, true>(a, C, s, b.n_inner, o, i0, n);
    }
    return strided_ce_group<kFull, false>(a, C, s, b.n_inner, o, i0, n);
  };
  auto row_scalar = [&](std::size_t o, std::size_t i) HWY_ATTR {
    CeIndexArgs<St, I> r = a;
    r.x = a.x + o * C * s + i;
    r.target = a.target + o * s + i;
    if (a.row_loss != nullptr) r.row_loss = a.row_loss + o * b.n_inner + i;
    if (a.dx != nullptr) r.dx = a.dx + o * C * s + i;
    if (a.dloss != nullptr) r.dloss = a.dloss + o * s + i;
    if (a.row_weight != nullptr) r.row_weight = a.row_weight + o * s + i;
    scalar_fn(r, Block{1, C, 1, s});
  };
  for_each_group<T>(b, group, row_scalar);
}

// ---------------------------------------------------------------------------------------------
// cross-entropy with probability targets (ce_prob_small's formulas, kernels_small-inl.h)
//
// c[c] = w[c] q[c], q = t (1 - eps) + eps / C (rows-inl.h coef_of, in the compute type);
// loss = Q log S - A, A = sum_c c[c] (x[c] - m), Q = sum_c c[c] (float64 lanes);
// dx = exp(x - m) T(g Q / S) - T(g) c. Pass 1 the max, pass 2 S, A and Q, pass 3 the gradient
// (exp recomputed: dx may alias the targets, which pass 3 still reads). A group with a NaN, +inf or
// all -inf row, or a row whose A or Q is not finite (a -inf logit, a non-finite coefficient), is
// redone row by row, and such a row runs the scalar twin (PyTorch's NaN / inf there).
template <bool kFull, class St>
HWY_INLINE bool strided_ce_prob_group(const CeProbArgs<St>& a, std::size_t C, std::size_t s, std::size_t n_inner,
                                      std::size_t o, std::size_t i0, std::size_t n) {
  using T = compute_t<St>;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  const double eps = a.smoothing;
  const Coefs<St> k{a.weight, a.target, 1 - eps, eps / static_cast<double>(C)};
  const std::size_t off = o * C * s + i0;
  const St* x = a.x + off;
  const St* t = a.target + off;
  auto coef_col = [&](std::size_t c) HWY_ATTR {
    return coef_of(d, k, col_load<kFull>(d, t + c * s, n), hn::Set(d, a.weight != nullptr ? static_cast<T>(a.weight[c]) : T(1)));
  };
  V m;
  if (!group_max<kFull>(x, C, s, n, &m)) return false;
  LaneSums<T> S, A, Q;
  for (std::size_t c = 0; c < C; ++c) {
    const V v = col_load<kFull>(d, x + c * s, n);
    const V cv = coef_col(c);
    S.add(exp_diff<kExactSum>(d, v, m));
    A.add_coef_shifted(cv, v, m);
    Q.add(cv);
  }
  HWY_ALIGN double Sb[kL], Ab[kL], Qb[kL];
  S.store(Sb);
  A.store(Ab);
  Q.store(Qb);
  for (std::size_t j = 0; j < L; j += LD)
    if (!hn::AllTrue(dd, hn::And(hn::IsFinite(hn::Load(dd, Ab + j)), hn::IsFinite(hn::Load(dd, Qb + j))))) return false;
  HWY_ALIGN T scale[kL] = {}, gb[kL] = {};
  for (std::size_t lane = 0; lane < n; ++lane) {
    const double logS = std::log(Sb[lane]);
    if (a.row_loss != nullptr) a.row_loss[o * n_inner + i0 + lane] = Qb[lane] * logS - Ab[lane];
    if (a.dx == nullptr) continue;
    const double g = a.dloss != nullptr ? a.dloss_scale * as_double(a.dloss[o * s + i0 + lane]) : a.dloss_scale;
    scale[lane] = static_cast<T>(g * Qb[lane] / Sb[lane]);
    gb[lane] = static_cast<T>(g);
  }
  if (a.dx == nullptr) return true;
  St* dx = a.dx + off;
  const V vs = hn::Load(d, scale), vg = hn::Load(d, gb);
  for (std::size_t c = 0; c < C; ++c) {
    const V e = exp_diff<kExactOut>(d, col_load<kFull>(d, x + c * s, n), m);
    col_store<kFull>(d, hn::NegMulAdd(coef_col(c), vg, hn::Mul(e, vs)), dx + c * s, n);
  }
  return true;
}

template <class St>
void strided_ce_prob(const CeProbArgs<St>& a, Block b) noexcept {
  const std::size_t C = b.C, s = b.stride;
  auto group = [&](std::size_t o, std::size_t i0, std::size_t n, auto full) HWY_ATTR {
    return strided_ce_prob_group<decltype(full)::value>(a, C, s, b.n_inner, o, i0, n);
  };
  auto row_scalar = [&](std::size_t o, std::size_t i) HWY_ATTR {
    CeProbArgs<St> r = a;
    r.x = a.x + o * C * s + i;
    r.target = a.target + o * C * s + i;
    if (a.row_loss != nullptr) r.row_loss = a.row_loss + o * b.n_inner + i;
    if (a.dx != nullptr) r.dx = a.dx + o * C * s + i;
    if (a.dloss != nullptr) r.dloss = a.dloss + o * s + i;
    scalar_table<St>().ce_prob(r, Block{1, C, 1, s});
  };
  for_each_group<compute_t<St>>(b, group, row_scalar);
}

// ---------------------------------------------------------------------------------------------
// NLL (the scalar twin's formulas, so the same bits): loss = -w[t] x[t]; dx zero but
// dx[t] = -g w[t]. Per outer index: every row's loss first (dx may alias x), then the block's
// n_inner contiguous positions of each class zeroed (memset: the work is the fill), then the
// targets' entries.
template <class St, class I>
void strided_nll(const CeIndexArgs<St, I>& a, Block b) noexcept {
  const std::size_t C = b.C, s = b.stride;
  for (std::size_t o = 0; o < b.n_outer; ++o) {
    const St* x = a.x + o * C * s;
    const I* tg = a.target + o * s;
    if (a.row_loss != nullptr) {
      double* rl = a.row_loss + o * b.n_inner;
      for (std::size_t i = 0; i < b.n_inner; ++i) {
        const std::int64_t t = static_cast<std::int64_t>(tg[i]);
        if (t == a.ignore_index) {
          rl[i] = 0.0;
          continue;
        }
        const double wt = a.weight != nullptr ? as_double(a.weight[t]) : 1.0;
        rl[i] = -wt * as_double(x[static_cast<std::size_t>(t) * s + i]);
      }
    }
    if (a.dx == nullptr) continue;
    St* dx = a.dx + o * C * s;
    for (std::size_t c = 0; c < C; ++c) std::memset(static_cast<void*>(dx + c * s), 0, b.n_inner * sizeof(St));
    for (std::size_t i = 0; i < b.n_inner; ++i) {
      const std::int64_t t = static_cast<std::int64_t>(tg[i]);
      if (t == a.ignore_index) continue;
      const double wt = a.weight != nullptr ? as_double(a.weight[t]) : 1.0;
      const double g = a.dloss != nullptr ? a.dloss_scale * as_double(a.dloss[o * s + i]) : a.dloss_scale;
      dx[static_cast<std::size_t>(t) * s + i] = static_cast<St>(-wt * g);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// forward-only statistics (kernels.h ce_stats): rows-inl.h ce_stats_cols on each group's columns.
template <class St>
void strided_ce_stats(const St* x, Block b, double* lse, double* entropy, std::int64_t* argmax) noexcept {
  using T = compute_t<St>;
  const std::size_t C = b.C, s = b.stride;
  auto group = [&](std::size_t o, std::size_t i0, std::size_t n, auto full) HWY_ATTR {
    constexpr bool kFull = decltype(full)::value;
    const hn::ScalableTag<T> d;
    const St* xg = x + o * C * s + i0;
    const std::size_t r0 = o * b.n_inner + i0;
    ce_stats_cols(C, n, [&](std::size_t c) HWY_ATTR { return col_load<kFull>(d, xg + c * s, n); }, lse + r0,
                  entropy + r0, argmax + r0, [&](std::size_t lane) HWY_ATTR {
                    scalar_table<St>().ce_stats(xg + lane, Block{1, C, 1, s}, lse + r0 + lane, entropy + r0 + lane,
                                                argmax + r0 + lane);
                  });
    return true;
  };
  for_each_group<T>(b, group, [](std::size_t, std::size_t) {});
}

#endif  // XENT_CPU_STRIDED_INL_H_
