// cross_entropy_hwy.cc: the SIMD cross-entropy kernels (class indices, with weights, ignore_index
// and label smoothing; probability targets; NLL; the per-chunk sums and gradient of split rows) and
// the vectorised target scan, compiled once per target through foreach_target; fills its entries of
// each ISA's kernel table (tables_hwy.cc). Row machinery: rows-inl.h; strided blocks:
// kernels_strided-inl.h.
//
// Loss as logsumexp - x[t]. Rows the vector formulas do not cover (a NaN, +-inf max, a non-finite
// x[t], a -inf logit with smoothing or probability targets) run the scalar twin on that row, decided
// before the row's dx is written (dx may alias x).
#include "cpu/hwy_targets.h"  // first: the target set

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/cross_entropy_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "cpu/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
#include "cpu/families-inl.h"

#if XENT_TARGET_HAS_KERNELS
// Blocks with stride != 1 (class dimension not last): strided_ce_index, ...
#include "cpu/kernels_strided-inl.h"

// ---------------------------------------------------------------------------------------------
// cross-entropy with class indices, and NLL

template <class T>
HWY_INLINE void zero_row(T* dx, std::size_t C, bool stream) {
  const hn::ScalableTag<T> d;
  map_row<0>(dx, C, stream, std::array<const T*, 0>{}, [&]() HWY_ATTR { return hn::Zero(d); });
}

template <class T, class I>
HWY_INLINE CeIndexArgs<T, I> ce_row_args(const CeIndexArgs<T, I>& a, std::size_t r, std::size_t C) {
  CeIndexArgs<T, I> s = a;
  s.x = a.x + r * C;
  s.target = a.target + r;
  if (a.row_loss != nullptr) s.row_loss = a.row_loss + r;
  if (a.dx != nullptr) s.dx = a.dx + r * C;
  if (a.dloss != nullptr) s.dloss = a.dloss + r;
  if (a.row_weight != nullptr) s.row_weight = a.row_weight + r;
  return s;
}

// The targets of a full tile (L rows) as T values, -1 where ignored (it then matches no column):
// one vector load, no per-row loop. Targets are valid here (the front end checked the range).
template <class T, class I>
HWY_INLINE hn::Vec<hn::ScalableTag<T>> tile_targets_full(const I* t, std::int64_t ignore) {
  const hn::ScalableTag<T> d;
  if constexpr (sizeof(I) == 4) {
    const hn::Rebind<std::int32_t, decltype(d)> di;
    auto v = hn::LoadU(di, reinterpret_cast<const std::int32_t*>(t));
    if (ignore >= std::numeric_limits<std::int32_t>::min() && ignore <= std::numeric_limits<std::int32_t>::max())
      v = hn::IfThenElse(hn::Eq(v, hn::Set(di, static_cast<std::int32_t>(ignore))), hn::Set(di, -1), v);
    if constexpr (sizeof(T) == 4) return hn::ConvertTo(d, v);
    else return hn::PromoteTo(d, v);
  } else {
    // int64 lanes -> int32 (the values fit: [-1, C)).
    auto narrow = [&](auto d64, const I* p) HWY_ATTR {
      auto v = hn::LoadU(d64, reinterpret_cast<const std::int64_t*>(p));
      v = hn::IfThenElse(hn::Eq(v, hn::Set(d64, ignore)), hn::Set(d64, std::int64_t{-1}), v);
      const hn::RebindToUnsigned<decltype(d64)> du64;
      const hn::Rebind<std::uint32_t, decltype(d64)> du32;
      return hn::BitCast(hn::RebindToSigned<decltype(du32)>(), hn::TruncateTo(du32, hn::BitCast(du64, v)));
    };
    if constexpr (sizeof(T) == 8) {
      return hn::PromoteTo(d, narrow(hn::RebindToSigned<decltype(d)>(), t));
    } else {
      const hn::Half<decltype(d)> dh;
      const hn::Rebind<std::int64_t, decltype(dh)> d64;
      const auto lo = hn::ConvertTo(dh, narrow(d64, t));
      const auto hi = hn::ConvertTo(dh, narrow(d64, t + hn::Lanes(dh)));
      return hn::Combine(d, hi, lo);
    }
  }
}

// Cross-entropy without label smoothing on short rows, across rows (see tile_load): the formulas
// of ce_index below, per-row scalars in double vectors, one exp per value. The normaliser is summed
// as S_o (every column but the target's) plus e[t], so p[t] - 1 = -S_o / S needs neither expm1 nor
// a cancellation as p[t] -> 1: one division per row gives both the gradient's scale and its target
// entry.
template <class T, class I, class ScalarFn>
void ce_index_small_plain(const CeIndexArgs<T, I>& a, std::size_t rows, std::size_t C, ScalarFn scalar_fn) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  using VD = hn::Vec<decltype(dd)>;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  constexpr bool kExact = kExactOut;
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T m[kL], xt[kL], et[kL], wt[kL], tf[kL], keep[kL], dl[kL], rw[kL], scale[kL], tgrad[kL];
  HWY_ALIGN double S[kL], So[kL], loss[kL];
  bool ok[kL];
  const VD vscale = hn::Set(dd, a.dloss_scale);
  const bool want_dx = a.dx != nullptr;
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    const bool fast = tile_load(a.x + r0 * C, C, n, tile);
    // Per row: the target as a T value (-1 when ignored), its weight (0 when ignored) and the
    // upstream gradient.
    V vt;
    if (n == L) {
      vt = tile_targets_full<T>(a.target + r0, a.ignore_index);
      const auto kept = hn::Ge(vt, hn::Zero(d));
      hn::Store(hn::IfThenElseZero(kept, hn::Set(d, T(1))), d, keep);
      if (a.weight != nullptr) {
        hn::Store(vt, d, tf);
        for (std::size_t lane = 0; lane < L; ++lane)
          wt[lane] = tf[lane] < T(0) ? T(0) : a.weight[static_cast<std::size_t>(tf[lane])];
      } else {
        hn::Store(hn::Load(d, keep), d, wt);
      }
      if (a.dloss != nullptr) hn::Store(hn::LoadU(d, a.dloss + r0), d, dl);
      if (a.row_weight != nullptr) hn::Store(hn::LoadU(d, a.row_weight + r0), d, rw);
    } else {
      for (std::size_t lane = 0; lane < L; ++lane) {
        const std::size_t r = r0 + (lane < n ? lane : n - 1);
        const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
        const bool ignored = t == a.ignore_index;
        tf[lane] = ignored ? T(-1) : static_cast<T>(t);
        keep[lane] = ignored ? T(0) : T(1);
        wt[lane] = ignored ? T(0) : (a.weight != nullptr ? a.weight[t] : T(1));
        if (a.dloss != nullptr) dl[lane] = a.dloss[r];
        if (a.row_weight != nullptr) rw[lane] = a.row_weight[r];
      }
      vt = hn::Load(d, tf);
    }
    // Max and x[t] (picked before the columns turn into exps).
    V vm = hn::Load(d, tile), vxt = hn::IfThenElseZero(hn::Eq(vt, hn::Zero(d)), vm);
    for (std::size_t c = 1; c < C; ++c) {
      const V x = hn::Load(d, tile + c * L);
      vm = hn::Max(vm, x);
      vxt = hn::IfThenElse(hn::Eq(vt, hn::Set(d, static_cast<T>(c))), x, vxt);
    }
    // e = exp(x - m): e[t] kept apart, the others summed in double.
    V vet = hn::Zero(d);
    VD so_lo = hn::Zero(dd), so_hi = hn::Zero(dd);
    V so = hn::Zero(d);
    for (std::size_t c = 0; c < C; ++c) {
      const V e = exp_diff<kExact>(d, hn::Load(d, tile + c * L), vm);
      if (want_dx) hn::Store(e, d, tile + c * L);
      const auto is_t = hn::Eq(vt, hn::Set(d, static_cast<T>(c)));
      vet = hn::IfThenElse(is_t, e, vet);
      const V eo = hn::IfThenZeroElse(is_t, e);
      if constexpr (sizeof(T) == 4) {
        const hn::Half<decltype(d)> dh;
        so_lo = hn::Add(so_lo, hn::PromoteTo(dd, hn::LowerHalf(dh, eo)));
        so_hi = hn::Add(so_hi, hn::PromoteTo(dd, hn::UpperHalf(dh, eo)));
      } else {
        so = hn::Add(so, eo);
      }
    }
    if constexpr (sizeof(T) == 4) {
      hn::Store(so_lo, dd, So);
      hn::Store(so_hi, dd, So + LD);
    } else {
      hn::Store(so, d, So);
    }
    hn::Store(vm, d, m);
    hn::Store(vxt, d, xt);
    hn::Store(vet, d, et);
    bool all = hn::AllTrue(d, hn::IsFinite(vm)) &&
               hn::AllTrue(d, hn::Or(hn::IsFinite(vxt), hn::Eq(hn::Load(d, keep), hn::Zero(d))));
    double* out_loss = a.row_loss != nullptr && n == L ? a.row_loss + r0 : loss;
    for (std::size_t k = 0; k < L; k += LD) {
      const auto kept = hn::Ne(load_wide(keep + k), hn::Zero(dd));
      const VD sod = hn::Load(dd, So + k);
      const VD s = hn::Add(sod, load_wide(et + k));
      hn::Store(s, dd, S + k);
      all = all && hn::AllTrue(dd, hn::IsFinite(s));
      const VD xtd = load_wide(xt + k), wtd = load_wide(wt + k);
      if (a.row_loss != nullptr) {
        const VD lse = hn::Add(load_wide(m + k), hn::Log(dd, s));
        hn::StoreU(hn::IfThenElseZero(kept, hn::Mul(wtd, hn::Sub(lse, xtd))), dd, out_loss + k);
      }
      if (!want_dx) continue;
      VD g = a.dloss != nullptr ? hn::Mul(vscale, load_wide(dl + k)) : vscale;  // row_upstream's order
      if (a.row_weight != nullptr) g = hn::Mul(g, load_wide(rw + k));
      const VD q = hn::IfThenElseZero(kept, hn::Div(hn::Mul(g, wtd), s));  // w[t] g / S
      store_narrow(q, scale + k);
      store_narrow(hn::Neg(hn::Mul(sod, q)), tgrad + k);  // w[t] g (p[t] - 1)
    }
    if (a.row_loss != nullptr && out_loss == loss)
      for (std::size_t lane = 0; lane < n; ++lane) a.row_loss[r0 + lane] = loss[lane];
    if (!all)
      for (std::size_t lane = 0; lane < L; ++lane)
        ok[lane] = std::isfinite(static_cast<double>(m[lane])) && std::isfinite(S[lane]) &&
                   (keep[lane] == T(0) || std::isfinite(static_cast<double>(xt[lane])));
    if (want_dx) {  // the tile holds exp(x - m): p = e * (w[t] g / S), the target's entry apart
      const V vs = hn::Load(d, scale), vg = hn::Load(d, tgrad);
      for (std::size_t c = 0; c < C; ++c) {
        const V p = hn::Mul(hn::Load(d, tile + c * L), vs);
        hn::Store(hn::IfThenElse(hn::Eq(vt, hn::Set(d, static_cast<T>(c))), vg, p), d, tile + c * L);
      }
    }
    // Rows the scalar twin redoes go first: dx may alias x, and the tile store skips them.
    if (!all)
      for (std::size_t lane = 0; lane < n; ++lane)
        if (!ok[lane]) scalar_fn(ce_row_args(a, r0 + lane, C), Block{1, C, 1, 1});
    if (want_dx) tile_store(tile, C, n, fast, all ? nullptr : ok, a.dx + r0 * C);
  }
}

// Cross-entropy with label smoothing on short rows, across rows (see tile_load): same formulas as
// ce_index below, one exp per value when a gradient is wanted (tile_stats keeps the exps).
template <class T, class I, class ScalarFn>
void ce_index_small(const CeIndexArgs<T, I>& a, std::size_t rows, std::size_t C, ScalarFn scalar_fn) {
  if (a.smoothing == 0) return ce_index_small_plain(a, rows, C, scalar_fn);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  using VD = hn::Vec<decltype(dd)>;
  const std::size_t LD = hn::Lanes(dd);
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T m[kL], scale[kL], bb[kL];
  HWY_ALIGN double S[kL], logS[kL], A[kL], arg[kL], pm1[kL];
  bool ok[kL];
  const double eps = a.smoothing;
  const double Cd = static_cast<double>(C);
  double W = 0;  // sum of class weights, for the smoothing term of the loss
  for (std::size_t c = 0; c < C; ++c) W += a.weight != nullptr ? static_cast<double>(a.weight[c]) : 1.0;
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    const T* x = a.x + r0 * C;
    const bool fast = tile_load(x, C, n, tile);
    // A = sum_c w[c] (x[c] - m) per row, in double (every term <= 0), before the tile turns into
    // exps (tile_stats keeps e = exp(x - m) when a gradient is wanted: one exp per value).
    V vmax = hn::Load(d, tile);
    for (std::size_t c = 1; c < C; ++c) vmax = hn::Max(vmax, hn::Load(d, tile + c * L));
    hn::Store(vmax, d, m);
    for (std::size_t j = 0; j < L; j += LD) hn::Store(hn::Zero(dd), dd, A + j);
    for (std::size_t c = 0; c < C; ++c) {
      const VD wc = hn::Set(dd, a.weight != nullptr ? static_cast<double>(a.weight[c]) : 1.0);
      for (std::size_t j = 0; j < L; j += LD)
        hn::Store(hn::MulAdd(wc, hn::Sub(load_wide(tile + c * L + j), load_wide(m + j)), hn::Load(dd, A + j)), dd, A + j);
    }
    const bool all = a.dx != nullptr ? tile_stats<T, true>(tile, C, m, S, logS, ok) : tile_stats<T, false>(tile, C, m, S, logS, ok);
    if (all)
      for (std::size_t lane = 0; lane < L; ++lane) ok[lane] = true;
    // p[t] - 1 = expm1(x[t] - lse) for every lane at once.
    for (std::size_t lane = 0; lane < L; ++lane) {
      arg[lane] = 0;
      if (lane >= n) continue;
      const std::int64_t t = static_cast<std::int64_t>(a.target[r0 + lane]);
      if (t == a.ignore_index) continue;
      const double xt = static_cast<double>(x[lane * C + static_cast<std::size_t>(t)]);
      if (!std::isfinite(xt) || !std::isfinite(A[lane])) ok[lane] = false;
      if (ok[lane]) arg[lane] = xt - (static_cast<double>(m[lane]) + logS[lane]);
    }
    if (a.dx != nullptr)
      for (std::size_t k = 0; k < L; k += LD) hn::Store(hn::Expm1(dd, hn::Load(dd, arg + k)), dd, pm1 + k);
    for (std::size_t lane = 0; lane < L; ++lane) {
      scale[lane] = T(0);
      bb[lane] = T(0);
      if (lane >= n || !ok[lane]) continue;
      const std::size_t r = r0 + lane;
      const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
      if (t == a.ignore_index) {
        if (a.row_loss != nullptr) a.row_loss[r] = 0;
        continue;
      }
      const double wt = a.weight != nullptr ? static_cast<double>(a.weight[t]) : 1.0;
      if (a.row_loss != nullptr) {
        const double lse = static_cast<double>(m[lane]) + logS[lane];
        const double nll = wt * (lse - static_cast<double>(x[lane * C + static_cast<std::size_t>(t)]));
        a.row_loss[r] = (1 - eps) * nll + eps / Cd * (W * logS[lane] - A[lane]);
      }
      if (a.dx == nullptr) continue;
      const double g = row_upstream(a, r);
      scale[lane] = static_cast<T>(g * ((1 - eps) * wt + eps * a.weight_sum / Cd) / S[lane]);
      bb[lane] = static_cast<T>(g * eps / Cd);
      double dt = (1 - eps) * wt * pm1[lane];
      if (eps != 0) dt += eps / Cd * (a.weight_sum * (pm1[lane] + 1) - wt);
      pm1[lane] = g * dt;  // reused: the target's gradient
    }
    if (a.dx != nullptr) {  // the tile holds e = exp(x - m)
      const V vs = hn::Load(d, scale), vb = hn::Load(d, bb);
      for (std::size_t c = 0; c < C; ++c) {
        const V wc = hn::Set(d, a.weight != nullptr ? a.weight[c] : T(1));
        hn::Store(hn::NegMulAdd(wc, vb, hn::Mul(hn::Load(d, tile + c * L), vs)), d, tile + c * L);
      }
    }
    // Rows the scalar twin redoes go first: dx may alias x, and the tile store skips them.
    for (std::size_t lane = 0; lane < n; ++lane)
      if (!ok[lane]) scalar_fn(ce_row_args(a, r0 + lane, C), Block{1, C, 1, 1});
    if (a.dx != nullptr) {
      T* dx = a.dx + r0 * C;
      bool every = true;  // ok may have dropped lanes since tile_stats (x[t] or A not finite)
      for (std::size_t lane = 0; lane < n; ++lane) every = every && ok[lane];
      tile_store(tile, C, n, fast, every ? nullptr : ok, dx);
      for (std::size_t lane = 0; lane < n; ++lane) {
        const std::int64_t t = static_cast<std::int64_t>(a.target[r0 + lane]);
        if (ok[lane] && t != a.ignore_index) dx[lane * C + static_cast<std::size_t>(t)] = static_cast<T>(pm1[lane]);
      }
    }
  }
}

// Fused forward and backward (or backward alone) for rows in cache (one_exp_rows): the formulas of
// ce_index below, each exp computed once and written into dx, then scaled in place. Every check
// that sends a row to the scalar twin (non-finite x[t], a NaN, +inf or all -inf row, a -inf with
// label smoothing) is made before the row's dx is written, since dx may alias x.
template <class T, class I, class ScalarFn>
void ce_index_one_exp(const CeIndexArgs<T, I>& a, Block b, ScalarFn scalar_fn) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const double eps = a.smoothing;
  const double W = a.weight_sum;
  const double Cd = static_cast<double>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* xr = a.x + r * C;
    T* dxr = a.dx + r * C;
    const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
    T m;
    bool ok = row_max(xr, C, &m);
    if (t == a.ignore_index) {
      // Loss 0; gradient 0 * p, which is NaN for the whole row when its normaliser is not finite.
      if (!ok) {
        scalar_fn(ce_row_args(a, r, C), Block{1, C, 1, 1});
        continue;
      }
      if (a.row_loss != nullptr) a.row_loss[r] = 0;
      zero_row(dxr, C, false);
      continue;
    }
    const double xt = static_cast<double>(xr[t]);
    double A = 0, Wr = 0;
    ok = ok && std::isfinite(xt) && (eps == 0 || row_coef_sums(xr, C, Coefs<T>{a.weight}, m, &A, &Wr));
    if (!ok) {
      scalar_fn(ce_row_args(a, r, C), Block{1, C, 1, 1});
      continue;
    }
    const double S = exp_store_sum(xr, dxr, C, m);
    const double logS = std::log(S);
    const double wt = a.weight != nullptr ? static_cast<double>(a.weight[t]) : 1.0;
    const double lse = static_cast<double>(m) + logS;
    if (a.row_loss != nullptr) {
      const double nll = wt * (lse - xt);
      a.row_loss[r] = eps == 0 ? nll : (1 - eps) * nll + eps / Cd * (Wr * logS - A);
    }
    const double g = row_upstream(a, r);
    const double coef = (1 - eps) * wt + eps * W / Cd;  // multiplies p[c]
    const V vscale = hn::Set(d, static_cast<T>(g * coef / S));
    if (eps == 0) {
      map_row<1>(dxr, C, false, {dxr}, [&](V e) HWY_ATTR { return hn::Mul(e, vscale); });
    } else {
      ce_grad_row(dxr, C, false, dxr, Coefs<T>{a.weight}, [](V e) HWY_ATTR { return e; }, static_cast<T>(g * coef / S),
                  static_cast<T>(g * eps / Cd));
    }
    // The target's entry, accurately: p[t] - 1 = expm1(x[t] - lse).
    const double pt_m1 = std::expm1(xt - lse);
    double dt = (1 - eps) * wt * pt_m1;
    if (eps != 0) dt += eps / Cd * (W * (pt_m1 + 1) - wt);
    dxr[t] = static_cast<T>(g * dt);
  }
}

// loss_row = (1 - eps) w[t] (lse - x[t]) + eps/C sum_c w[c] (lse - x[c])
// dx[c]    = g ((1 - eps) w[t] (p[c] - [c == t]) + eps/C (W p[c] - w[c])),  W = sum_c w[c]
// with p[t] - 1 taken as expm1(x[t] - lse), which keeps its relative accuracy as p[t] -> 1.
template <class T, class I>
void ce_index(const CeIndexArgs<T, I>& a, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  auto* scalar_fn = [&] {
    if constexpr (sizeof(I) == 4) return scalar.ce_index_i32;
    else return scalar.ce_index_i64;
  }();
  if (b.C == 0) return scalar_fn(a, b);
  if (b.stride != 1) return strided_ce_index(a, b);
  if (b.C <= kSmallC) return ce_index_small(a, b.n_outer, b.C, scalar_fn);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const bool stream = a.dx != nullptr && stream_rows<T>(C);
  const double eps = a.smoothing;
  const double W = a.weight_sum;
  if (a.dx != nullptr && one_exp_rows<T>(C)) return ce_index_one_exp(a, b, scalar_fn);
  const Coefs<T> wk{a.weight};
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* xr = a.x + r * C;
    const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
    if (t == a.ignore_index) {
      // Loss 0; gradient 0 * p, which is NaN for the whole row when its normaliser is not finite.
      if (a.row_loss != nullptr) a.row_loss[r] = 0;
      if (a.dx == nullptr) continue;
      RowStats st;
      if (row_stats<T, false>(xr, C, nullptr, &st)) {
        zero_row(a.dx + r * C, C, stream);
      } else {
        if (stream) hwy::FlushStream();
        scalar_fn(ce_row_args(a, r, C), Block{1, C, 1, 1});
      }
      continue;
    }
    const double xt = static_cast<double>(xr[t]);
    RowStats st;
    const bool ok = std::isfinite(xt) && (eps == 0 ? row_stats<T, false>(xr, C, nullptr, &st)
                                                   : row_stats<T, true>(xr, C, &wk, &st));
    if (!ok) {
      if (stream) hwy::FlushStream();
      scalar_fn(ce_row_args(a, r, C), Block{1, C, 1, 1});
      continue;
    }
    const double wt = a.weight != nullptr ? static_cast<double>(a.weight[t]) : 1.0;
    const double lse = st.m + std::log(st.s);
    if (a.row_loss != nullptr) {
      const double nll = wt * (lse - xt);
      // Smoothing term: sum_c w[c] (lse - x[c]) = (sum w) log S - sum_c w[c] (x[c] - m), both >= 0.
      a.row_loss[r] = eps == 0 ? nll : (1 - eps) * nll + eps / static_cast<double>(C) * (st.wsum * std::log(st.s) - st.wx);
    }
    if (a.dx == nullptr) continue;
    const double g = row_upstream(a, r);
    const double coef = (1 - eps) * wt + eps * W / static_cast<double>(C);  // multiplies p[c]
    const V vm = hn::Set(d, static_cast<T>(st.m));
    const V vscale = hn::Set(d, static_cast<T>(g * coef / st.s));
    T* dxr = a.dx + r * C;
    if (eps == 0) {
      map_row<1>(dxr, C, stream, {xr}, [&](V v) HWY_ATTR { return hn::Mul(exp_diff<kExactOut>(d, v, vm), vscale); });
    } else {
      ce_grad_row(dxr, C, stream, xr, wk, [&](V v) HWY_ATTR { return exp_diff<kExactOut>(d, v, vm); },
                  static_cast<T>(g * coef / st.s), static_cast<T>(g * eps / static_cast<double>(C)));
    }
    // The target's entry, accurately: p[t] - 1 = expm1(x[t] - lse).
    const double pt_m1 = std::expm1(xt - lse);
    double dt = (1 - eps) * wt * pt_m1;
    if (eps != 0) dt += eps / static_cast<double>(C) * (W * (pt_m1 + 1) - wt);
    if (stream) hwy::FlushStream();
    dxr[t] = static_cast<T>(g * dt);
  }
  if (stream) hwy::FlushStream();
}

// Probability targets on short rows (C <= kSmallC), across rows: the logits and the targets are
// loaded as tiles (see tile_load), so every per-row quantity is a lane. The formulas are ce_prob's:
// the column max m, then A = sum c (x - m) and Q = sum c in double (c = w q), then tile_stats
// (which keeps e = exp(x - m) in the tile when a gradient is wanted), then dx = e (g Q / S) - g c.
// Both tiles are read before anything is stored, so dx may alias the logits or the targets.
template <class T>
void ce_prob_small(const CeProbArgs<T>& a, std::size_t rows, std::size_t C) {
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  using VD = hn::Vec<decltype(dd)>;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T ttile[kSmallC * kL];
  HWY_ALIGN T m[kL], col[kL], scale[kL], gb[kL];
  HWY_ALIGN double S[kL], logS[kL], A[kL], Q[kL];
  bool ok[kL];
  const double eps = a.smoothing;
  const Coefs<T> k{a.weight, a.target, 1 - eps, eps / static_cast<double>(C)};
  auto coef_col = [&](std::size_t c) HWY_ATTR {
    return coef_of(d, k, hn::Load(d, ttile + c * L), hn::Set(d, a.weight != nullptr ? a.weight[c] : T(1)));
  };
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    const bool fast = tile_load(a.x + r0 * C, C, n, tile);
    tile_load(a.target + r0 * C, C, n, ttile);
    V vm = hn::Load(d, tile);
    for (std::size_t c = 1; c < C; ++c) vm = hn::Max(vm, hn::Load(d, tile + c * L));
    hn::Store(vm, d, m);
    for (std::size_t j = 0; j < L; j += LD) {
      hn::Store(hn::Zero(dd), dd, A + j);
      hn::Store(hn::Zero(dd), dd, Q + j);
    }
    for (std::size_t c = 0; c < C; ++c) {
      hn::Store(coef_col(c), d, col);
      for (std::size_t j = 0; j < L; j += LD) {
        const VD cw = load_wide(col + j);
        const VD xm = hn::Sub(load_wide(tile + c * L + j), load_wide(m + j));
        hn::Store(hn::MulAdd(cw, xm, hn::Load(dd, A + j)), dd, A + j);
        hn::Store(hn::Add(cw, hn::Load(dd, Q + j)), dd, Q + j);
      }
    }
    bool all = a.dx != nullptr ? tile_stats<T, true>(tile, C, m, S, logS, ok) : tile_stats<T, false>(tile, C, m, S, logS, ok);
    if (all)
      for (std::size_t lane = 0; lane < L; ++lane) ok[lane] = true;
    for (std::size_t lane = 0; lane < n; ++lane) {
      ok[lane] = ok[lane] && std::isfinite(A[lane]) && std::isfinite(Q[lane]);
      all = all && ok[lane];
      scale[lane] = gb[lane] = T(0);
      if (!ok[lane]) continue;
      const std::size_t r = r0 + lane;
      if (a.row_loss != nullptr) a.row_loss[r] = Q[lane] * logS[lane] - A[lane];
      if (a.dx == nullptr) continue;
      const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(a.dloss[r]) : a.dloss_scale;
      scale[lane] = static_cast<T>(g * Q[lane] / S[lane]);
      gb[lane] = static_cast<T>(g);
    }
    if (a.dx != nullptr) {
      const V vs = hn::Load(d, scale), vg = hn::Load(d, gb);
      for (std::size_t c = 0; c < C; ++c)
        hn::Store(hn::NegMulAdd(coef_col(c), vg, hn::Mul(hn::Load(d, tile + c * L), vs)), d, tile + c * L);
    }
    // Rows the scalar twin redoes go first: dx may alias x, and the tile store skips them.
    for (std::size_t lane = 0; lane < n; ++lane) {
      if (ok[lane]) continue;
      const std::size_t r = r0 + lane;
      CeProbArgs<T> ra = a;
      ra.x = a.x + r * C;
      ra.target = a.target + r * C;
      ra.row_loss = a.row_loss != nullptr ? a.row_loss + r : nullptr;
      ra.dx = a.dx != nullptr ? a.dx + r * C : nullptr;
      ra.dloss = a.dloss != nullptr ? a.dloss + r : nullptr;
      scalar_table<T>().ce_prob(ra, Block{1, C, 1, 1});
    }
    if (a.dx != nullptr) tile_store(tile, C, n, fast, all ? nullptr : ok, a.dx + r0 * C);
  }
}

// Probability targets, q[c] = t[c] (1 - eps) + eps / C, c[c] = w[c] q[c], Q = sum_c c[c]:
//   loss_row = sum_c c[c] (lse - x[c]) = Q log S - sum_c c[c] (x[c] - m)   (both terms >= 0 for c >= 0)
//   dx[c]    = g (p[c] Q - c[c]) = exp(x[c] - m) (g Q / S) - g c[c]
// Rows in cache with a gradient take one exp per value (ce_index_one_exp's scheme), unless dx
// aliases the target, which the scaling pass still reads; longer rows read x and t once for the
// sums (row_stats) and once for the gradient. A row the vector sums decline (a NaN, an infinite
// logit, a non-finite coefficient) runs the scalar twin, whose NaN for a -inf logit is PyTorch's.
template <class T>
void ce_prob(const CeProbArgs<T>& a, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  if (b.stride != 1 || b.C == 0) return scalar.ce_prob(a, b);
  if (b.C <= kSmallC) return ce_prob_small(a, b.n_outer, b.C);
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t C = b.C;
  const double eps = a.smoothing;
  const bool stream = a.dx != nullptr && stream_rows<T>(C);
  const bool one_exp = a.dx != nullptr && one_exp_rows<T>(C) && a.dx != a.target;
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const T* xr = a.x + r * C;
    T* dxr = a.dx != nullptr ? a.dx + r * C : nullptr;
    const Coefs<T> k{a.weight, a.target + r * C, 1 - eps, eps / static_cast<double>(C)};
    auto row_scalar = [&] {
      if (stream) hwy::FlushStream();
      CeProbArgs<T> ra = a;
      ra.x = xr;
      ra.target = k.t;
      ra.row_loss = a.row_loss != nullptr ? a.row_loss + r : nullptr;
      ra.dx = dxr;
      ra.dloss = a.dloss != nullptr ? a.dloss + r : nullptr;
      scalar.ce_prob(ra, Block{1, C, 1, 1});
    };
    double m, S, A, Q;
    if (one_exp) {
      T mt;
      if (!row_max(xr, C, &mt) || !row_coef_sums(xr, C, k, mt, &A, &Q)) {
        row_scalar();
        continue;
      }
      m = static_cast<double>(mt);
      S = exp_store_sum(xr, dxr, C, mt);
    } else {
      RowStats st;
      if (!row_stats<T, true>(xr, C, &k, &st)) {
        row_scalar();
        continue;
      }
      m = st.m;
      S = st.s;
      A = st.wx;
      Q = st.wsum;
    }
    if (a.row_loss != nullptr) a.row_loss[r] = Q * std::log(S) - A;
    if (dxr == nullptr) continue;
    const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(a.dloss[r]) : a.dloss_scale;
    const T scale = static_cast<T>(g * Q / S), gb = static_cast<T>(g);
    if (one_exp) {
      ce_grad_row(dxr, C, false, dxr, k, [](V e) HWY_ATTR { return e; }, scale, gb);
    } else {
      const V vm = hn::Set(d, static_cast<T>(m));
      ce_grad_row(dxr, C, stream, xr, k, [&](V v) HWY_ATTR { return exp_diff<kExactOut>(d, v, vm); }, scale, gb);
    }
  }
  if (stream) hwy::FlushStream();
}

// Split rows with coefficients (kernels.h chunk_ce_grad): ce_grad_row on one run; its sums are
// rows-inl.h chunk_sums.
template <class T>
void chunk_ce_grad(const T* x, const Coefs<T>& k, T* dx, std::size_t n, double m, double scale, double gb) noexcept {
  if (n == 0) return;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const bool stream = stream_rows<T>(n);
  const V vm = hn::Set(d, static_cast<T>(m));
  ce_grad_row(dx, n, stream, x, k, [&](V v) HWY_ATTR { return exp_diff<kExactOut>(d, v, vm); }, static_cast<T>(scale),
              static_cast<T>(gb));
  if (stream) hwy::FlushStream();
}

// NLL: loss_row = -w[t] x[t]; dx is zero but for dx[t] = -g w[t] (the scalar twin's formulas,
// so the bits are the same). The work is the zero fill, streamed for long rows.
template <class T, class I>
void nll(const CeIndexArgs<T, I>& a, Block b) noexcept {
  const auto& scalar = scalar_table<T>();
  auto* scalar_fn = [&] {
    if constexpr (sizeof(I) == 4) return scalar.nll_i32;
    else return scalar.nll_i64;
  }();
  if (b.stride != 1 || b.C == 0 || a.dx == nullptr) return scalar_fn(a, b);
  const std::size_t C = b.C;
  const bool stream = stream_rows<T>(C);
  for (std::size_t r = 0; r < b.n_outer; ++r) {
    const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
    const bool ignored = t == a.ignore_index;
    const double wt = ignored ? 0.0 : (a.weight != nullptr ? static_cast<double>(a.weight[t]) : 1.0);
    if (a.row_loss != nullptr) a.row_loss[r] = ignored ? 0.0 : -wt * static_cast<double>(a.x[r * C + t]);
    T* dxr = a.dx + r * C;
    zero_row(dxr, C, stream);
    if (!ignored) {
      const double g = a.dloss != nullptr ? a.dloss_scale * static_cast<double>(a.dloss[r]) : a.dloss_scale;
      if (stream) hwy::FlushStream();
      dxr[t] = static_cast<T>(-wt * g);
    }
  }
  if (stream) hwy::FlushStream();
}

// ---------------------------------------------------------------------------------------------
// target scan (validation)

// The scalar table's count_kept, a vector of targets at a time: ignored lanes counted (a mask is
// -1 per lane), out-of-range lanes folded into one mask. Lane counts stay far below overflow:
// chunks of kChunk vectors are summed into the int64 total.
template <class I>
std::int64_t count_kept(const I* t, std::size_t n, std::int64_t C, std::int64_t ignore_index, bool* bad) noexcept {
  if (static_cast<std::int64_t>(static_cast<I>(ignore_index)) != ignore_index || C <= 0 ||
      static_cast<std::int64_t>(static_cast<I>(C)) != C)
  {
    if constexpr (sizeof(I) == 8) return scalar_table<float>().count_kept_i64(t, n, C, ignore_index, bad);
    else return scalar_table<float>().count_kept_i32(t, n, C, ignore_index, bad);
  }
  const hn::ScalableTag<I> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t L = hn::Lanes(d);
  constexpr std::size_t kChunk = std::size_t{1} << 20;
  const V vign = hn::Set(d, static_cast<I>(ignore_index)), vC = hn::Set(d, static_cast<I>(C)), zero = hn::Zero(d);
  V good = hn::VecFromMask(d, hn::Eq(zero, zero));
  std::int64_t ignored = 0;
  std::size_t i = 0;
  while (i + L <= n) {
    const std::size_t end = std::min(n - (n - i) % L, i + kChunk * L);
    V cnt = zero;
    for (; i < end; i += L) {
      const V v = hn::LoadU(d, t + i);
      const auto ign = hn::Eq(v, vign);
      cnt = hn::Sub(cnt, hn::VecFromMask(d, ign));
      const V in_range = hn::AndNot(hn::VecFromMask(d, hn::Lt(v, zero)), hn::VecFromMask(d, hn::Lt(v, vC)));
      good = hn::And(good, hn::Or(hn::VecFromMask(d, ign), in_range));
    }
    ignored += static_cast<std::int64_t>(hn::GetLane(hn::SumOfLanes(d, cnt)));
  }
  bool any_bad = !hn::AllTrue(d, hn::Ne(good, zero));
  for (; i < n; ++i) {
    const std::int64_t v = t[i];
    const bool ign = v == ignore_index;
    any_bad |= !ign && (v < 0 || v >= C);
    ignored += ign;
  }
  *bad = any_bad;
  return static_cast<std::int64_t>(n) - ignored;
}
template <class T>
void fill_cross_entropy_t(KernelTable<T>* t) noexcept {
  t->chunk_sums = &chunk_sums<T>;
  t->chunk_ce_grad = &chunk_ce_grad<T>;
  t->ce_index_i32 = &ce_index<T, std::int32_t>;
  t->ce_index_i64 = &ce_index<T, std::int64_t>;
  t->nll_i32 = &nll<T, std::int32_t>;
  t->nll_i64 = &nll<T, std::int64_t>;
  t->ce_prob = &ce_prob<T>;
  t->ce_stats = &ce_stats<T>;
  t->count_kept_i32 = &count_kept<std::int32_t>;
  t->count_kept_i64 = &count_kept<std::int64_t>;
}

void fill_cross_entropy(KernelTable<float>* t) noexcept { fill_cross_entropy_t(t); }
void fill_cross_entropy(KernelTable<double>* t) noexcept { fill_cross_entropy_t(t); }

#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();
