// kernels_small-inl.h: the short-row kernels (C <= kSmallC classes), vectorised across rows, for
// every storage type: softmax, log_softmax and logsumexp forward, softmax and log_softmax backward,
// cross-entropy with class indices (with and without label smoothing) and with probability
// targets, and the forward-only statistics (ce_stats, rows shorter than two vectors). Included
// from inside the xent::cpu::HWY_NAMESPACE of softmax_hwy.cc and cross_entropy_hwy.cc (float32,
// float64) and half_hwy.cc (bfloat16, float16), after rows-inl.h, whose tiles it uses (tile_load,
// tile_stats, tile_store, ce_stats_cols); it includes nothing and is no header of its own. Not here: rows longer than kSmallC, strided blocks (kernels_strided-inl.h).
//
// A tile is one vector's worth of rows, each row one lane (rows-inl.h). The 16-bit types fill it
// from a float32 copy of the tile's rows (contiguous, widened exactly) and empty it through one
// (each value rounded once to nearest even), so they compute exactly as the float32 kernels do;
// per-row results computed in double (logsumexp, the cross-entropy target entry) are rounded once
// from double into the 16-bit type. Rows the vector formulas do not cover run the scalar twin of
// their own type before the tile is stored (outputs may alias inputs), and every row's arithmetic
// depends only on C, so any split of rows across threads gives the same bits.

#if defined(XENT_CPU_SMALL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef XENT_CPU_SMALL_INL_H_
#undef XENT_CPU_SMALL_INL_H_
#else
#define XENT_CPU_SMALL_INL_H_
#endif

// n 16-bit values widened to float32 (exact) / n float32 values rounded once into the 16-bit type
// (load_u / store_u lane-wise; the tail by the scalar conversions, which give the same bits). Also
// the 16-bit tables' widen_f32 / narrow_f32 entries.
template <class St>
void widen_f32(const St* x, float* y, std::size_t n) noexcept {
  const hn::ScalableTag<float> d;
  const std::size_t N = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(load_u(d, x + i), d, y + i);
  for (; i < n; ++i) y[i] = static_cast<float>(x[i]);
}

template <class St>
void narrow_f32(const float* x, St* y, std::size_t n) noexcept {
  const hn::ScalableTag<float> d;
  const std::size_t N = hn::Lanes(d);
  std::size_t i = 0;
  for (; i + N <= n; i += N) store_u(hn::LoadU(d, x + i), d, y + i);
  for (; i < n; ++i) y[i] = St(x[i]);
}

// rows-inl.h tile_load / tile_store for 16-bit rows and a float32 tile: through a float32 copy of
// the tile's n rows of C values (contiguous), so the in-register transposes apply unchanged.
template <class St, class = std::enable_if_t<::xent::detail::kIsHalf<St>>>
HWY_INLINE bool tile_load(const St* x, std::size_t C, std::size_t n, float* tile) {
  HWY_ALIGN float wide[kSmallC * (kMaxLanesBytes / sizeof(float))];
  widen_f32(x, wide, n * C);
  return tile_load(static_cast<const float*>(wide), C, n, tile);
}

template <class St, class = std::enable_if_t<::xent::detail::kIsHalf<St>>>
HWY_INLINE void tile_store(const float* tile, std::size_t C, std::size_t n, bool fast, const bool* ok, St* y) {
  HWY_ALIGN float wide[kSmallC * (kMaxLanesBytes / sizeof(float))];
  tile_store(tile, C, n, fast, nullptr, static_cast<float*>(wide));
  if (ok == nullptr) return narrow_f32(wide, y, n * C);
  for (std::size_t lane = 0; lane < n; ++lane)
    if (ok[lane]) narrow_f32(wide + lane * C, y + lane * C, C);
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

template <class St>
void softmax_small(const St* x, St* y, std::size_t rows, std::size_t C, bool log_softmax) {
  using T = compute_t<St>;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T m[kL], a[kL];
  HWY_ALIGN double S[kL], logS[kL];
  bool ok[kL];
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    const bool fast = tile_load(x + r0 * C, C, n, tile);
    // log_softmax: y = (x - m) - log S, as the long-row path (log S must not vanish into m);
    // softmax: y = e * (1 / S).
    const bool all = log_softmax ? tile_stats<T, false>(tile, C, m, S, logS, ok) : tile_stats<T, true>(tile, C, m, S, logS, ok);
    for (std::size_t k = 0; k < L; k += LD)
      store_narrow(log_softmax ? hn::Load(dd, logS + k) : hn::Div(hn::Set(dd, 1.0), hn::Load(dd, S + k)), a + k);
    const V vm = hn::Load(d, m), va = hn::Load(d, a);
    for (std::size_t c = 0; c < C; ++c) {
      const V v = hn::Load(d, tile + c * L);
      hn::Store(log_softmax ? hn::Sub(hn::Sub(v, vm), va) : hn::Mul(v, va), d, tile + c * L);
    }
    // Rows the scalar twin redoes are done before the tile is stored: y may alias x.
    if (!all) {
      for (std::size_t lane = 0; lane < n; ++lane) {
        if (ok[lane]) continue;
        const St* xr = x + (r0 + lane) * C;
        St* yr = y + (r0 + lane) * C;
        if (log_softmax) scalar_table<St>().log_softmax_fwd(xr, yr, Block{1, C, 1, 1});
        else scalar_table<St>().softmax_fwd(xr, yr, Block{1, C, 1, 1});
      }
    }
    tile_store(tile, C, n, fast, all ? nullptr : ok, y + r0 * C);
  }
}

template <class St>
void logsumexp_small(const St* x, St* lse, std::size_t rows, std::size_t C) {
  using T = compute_t<St>;
  const hn::ScalableTag<T> d;
  const hn::ScalableTag<double> dd;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T m[kL];
  HWY_ALIGN double S[kL], logS[kL], out[kL];
  bool ok[kL];
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    tile_load(x + r0 * C, C, n, tile);
    const bool all = tile_stats<T, false>(tile, C, m, S, logS, ok);
    for (std::size_t k = 0; k < L; k += LD) hn::Store(hn::Add(load_wide(m + k), hn::Load(dd, logS + k)), dd, out + k);
    for (std::size_t lane = 0; lane < n; ++lane) {
      if (all || ok[lane]) lse[r0 + lane] = static_cast<St>(out[lane]);  // rounded once from double
      else scalar_table<St>().logsumexp_fwd(x + (r0 + lane) * C, lse + r0 + lane, Block{1, C, 1, 1});
    }
  }
}

// Short rows backward, across rows as the forward: a tile of y and one of dy, each row one lane;
// per lane the dot sum(dy * y) (softmax) or sum(dy) (log_softmax) accumulated in double, as
// chunk_dot does along a row, then dx = y * (dy - dot) or dy - exp(y) * sum. dx may alias y or dy
// (both tiles are loaded before the tile is stored).
template <class St>
void softmax_small_bwd(const St* y, const St* dy, St* dx, std::size_t rows, std::size_t C, bool log_softmax) {
  using T = compute_t<St>;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  HWY_ALIGN T ty[kSmallC * kL];
  HWY_ALIGN T tdy[kSmallC * kL];
  HWY_ALIGN T dot[kL];
  HWY_ALIGN double wide[kL];
  const V zero = hn::Zero(d);
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    const bool fast = tile_load(y + r0 * C, C, n, ty);
    tile_load(dy + r0 * C, C, n, tdy);
    WideSum<T> acc;
    for (std::size_t c = 0; c < C; ++c) {
      if (log_softmax) acc.add(hn::Load(d, tdy + c * L));
      else acc.add_mul(hn::Load(d, ty + c * L), hn::Load(d, tdy + c * L));
    }
    acc.store_lanes(wide);
    for (std::size_t k = 0; k < L; k += LD) store_narrow(hn::Load(dd, wide + k), dot + k);
    const V vdot = hn::Load(d, dot);
    for (std::size_t c = 0; c < C; ++c) {
      const V yv = hn::Load(d, ty + c * L), dyv = hn::Load(d, tdy + c * L);
      hn::Store(log_softmax ? hn::NegMulAdd(exp_diff_any(d, yv, zero), vdot, dyv) : hn::Mul(yv, hn::Sub(dyv, vdot)), d,
                ty + c * L);
    }
    tile_store(ty, C, n, fast, nullptr, dx + r0 * C);
  }
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
template <class St, class I, class ScalarFn>
void ce_index_small_plain(const CeIndexArgs<St, I>& a, std::size_t rows, std::size_t C, ScalarFn scalar_fn) {
  using T = compute_t<St>;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const hn::ScalableTag<double> dd;
  using VD = hn::Vec<decltype(dd)>;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  constexpr bool kExact = kExactOut;
  const std::size_t L = hn::Lanes(d), LD = hn::Lanes(dd);
  HWY_ALIGN T tile[kSmallC * kL];
  HWY_ALIGN T m[kL], xt[kL], et[kL], wt[kL], tf[kL], keep[kL], dl[kL], rw[kL], scale[kL], tgrad[kL];
  HWY_ALIGN double S[kL], So[kL], loss[kL], tgd[kL];
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
          wt[lane] = tf[lane] < T(0) ? T(0) : static_cast<T>(a.weight[static_cast<std::size_t>(tf[lane])]);
      } else {
        hn::Store(hn::Load(d, keep), d, wt);
      }
      if (a.dloss != nullptr) hn::Store(load_u(d, a.dloss + r0), d, dl);
      if (a.row_weight != nullptr) hn::Store(load_u(d, a.row_weight + r0), d, rw);
    } else {
      for (std::size_t lane = 0; lane < L; ++lane) {
        const std::size_t r = r0 + (lane < n ? lane : n - 1);
        const std::int64_t t = static_cast<std::int64_t>(a.target[r]);
        const bool ignored = t == a.ignore_index;
        tf[lane] = ignored ? T(-1) : static_cast<T>(t);
        keep[lane] = ignored ? T(0) : T(1);
        wt[lane] = ignored ? T(0) : (a.weight != nullptr ? static_cast<T>(a.weight[t]) : T(1));
        if (a.dloss != nullptr) dl[lane] = static_cast<T>(a.dloss[r]);
        if (a.row_weight != nullptr) rw[lane] = static_cast<T>(a.row_weight[r]);
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
      const VD tg = hn::Sub(hn::Zero(dd), hn::Mul(sod, q));  // w[t] g (p[t] - 1); +0 when p[t] = 1 (C = 1)
      store_narrow(tg, tgrad + k);
      if constexpr (::xent::detail::kIsHalf<St>) hn::Store(tg, dd, tgd + k);
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
    if constexpr (::xent::detail::kIsHalf<St>) {
      // The target's entry rounded once from double into the 16-bit type, not through float.
      if (want_dx) {
        hn::Store(vt, d, tf);
        for (std::size_t lane = 0; lane < n; ++lane)
          if ((all || ok[lane]) && tf[lane] >= T(0))
            a.dx[(r0 + lane) * C + static_cast<std::size_t>(tf[lane])] = static_cast<St>(tgd[lane]);
      }
    }
  }
}

// Cross-entropy with label smoothing on short rows, across rows (see tile_load): same formulas as
// ce_index below, one exp per value when a gradient is wanted (tile_stats keeps the exps).
template <class St, class I, class ScalarFn>
void ce_index_small(const CeIndexArgs<St, I>& a, std::size_t rows, std::size_t C, ScalarFn scalar_fn) {
  using T = compute_t<St>;
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
  for (std::size_t c = 0; c < C; ++c) W += a.weight != nullptr ? as_double(a.weight[c]) : 1.0;
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    const St* x = a.x + r0 * C;
    const bool fast = tile_load(x, C, n, tile);
    // A = sum_c w[c] (x[c] - m) per row, in double (every term <= 0), before the tile turns into
    // exps (tile_stats keeps e = exp(x - m) when a gradient is wanted: one exp per value).
    V vmax = hn::Load(d, tile);
    for (std::size_t c = 1; c < C; ++c) vmax = hn::Max(vmax, hn::Load(d, tile + c * L));
    hn::Store(vmax, d, m);
    for (std::size_t j = 0; j < L; j += LD) hn::Store(hn::Zero(dd), dd, A + j);
    for (std::size_t c = 0; c < C; ++c) {
      const VD wc = hn::Set(dd, a.weight != nullptr ? as_double(a.weight[c]) : 1.0);
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
      const double xt = as_double(x[lane * C + static_cast<std::size_t>(t)]);
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
      const double wt = a.weight != nullptr ? as_double(a.weight[t]) : 1.0;
      if (a.row_loss != nullptr) {
        const double lse = static_cast<double>(m[lane]) + logS[lane];
        const double nll = wt * (lse - as_double(x[lane * C + static_cast<std::size_t>(t)]));
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
        const V wc = hn::Set(d, a.weight != nullptr ? static_cast<T>(a.weight[c]) : T(1));
        hn::Store(hn::NegMulAdd(wc, vb, hn::Mul(hn::Load(d, tile + c * L), vs)), d, tile + c * L);
      }
    }
    // Rows the scalar twin redoes go first: dx may alias x, and the tile store skips them.
    for (std::size_t lane = 0; lane < n; ++lane)
      if (!ok[lane]) scalar_fn(ce_row_args(a, r0 + lane, C), Block{1, C, 1, 1});
    if (a.dx != nullptr) {
      St* dx = a.dx + r0 * C;
      bool every = true;  // ok may have dropped lanes since tile_stats (x[t] or A not finite)
      for (std::size_t lane = 0; lane < n; ++lane) every = every && ok[lane];
      tile_store(tile, C, n, fast, every ? nullptr : ok, dx);
      for (std::size_t lane = 0; lane < n; ++lane) {
        const std::int64_t t = static_cast<std::int64_t>(a.target[r0 + lane]);
        if (ok[lane] && t != a.ignore_index) dx[lane * C + static_cast<std::size_t>(t)] = static_cast<St>(pm1[lane]);
      }
    }
  }
}

// Probability targets on short rows (C <= kSmallC), across rows: the logits and the targets are
// loaded as tiles (see tile_load), so every per-row quantity is a lane. The formulas are ce_prob's:
// the column max m, then A = sum c (x - m) and Q = sum c in double (c = w q), then tile_stats
// (which keeps e = exp(x - m) in the tile when a gradient is wanted), then dx = e (g Q / S) - g c.
// Both tiles are read before anything is stored, so dx may alias the logits or the targets.
template <class St>
void ce_prob_small(const CeProbArgs<St>& a, std::size_t rows, std::size_t C) {
  using T = compute_t<St>;
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
  const Coefs<St> k{a.weight, a.target, 1 - eps, eps / static_cast<double>(C)};
  auto coef_col = [&](std::size_t c) HWY_ATTR {
    return coef_of(d, k, hn::Load(d, ttile + c * L), hn::Set(d, a.weight != nullptr ? static_cast<T>(a.weight[c]) : T(1)));
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
      const double g = a.dloss != nullptr ? a.dloss_scale * as_double(a.dloss[r]) : a.dloss_scale;
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
      CeProbArgs<St> ra = a;
      ra.x = a.x + r * C;
      ra.target = a.target + r * C;
      ra.row_loss = a.row_loss != nullptr ? a.row_loss + r : nullptr;
      ra.dx = a.dx != nullptr ? a.dx + r * C : nullptr;
      ra.dloss = a.dloss != nullptr ? a.dloss + r : nullptr;
      scalar_table<St>().ce_prob(ra, Block{1, C, 1, 1});
    }
    if (a.dx != nullptr) tile_store(tile, C, n, fast, all ? nullptr : ok, a.dx + r0 * C);
  }
}

// Forward-only statistics (kernels.h ce_stats) of rows shorter than two vectors, across rows: each
// tile's columns through rows-inl.h ce_stats_cols (the rows a lane cannot take run the scalar twin).
template <class St>
void ce_stats_small(const St* x, std::size_t rows, std::size_t C, double* lse, double* entropy,
                    std::int64_t* argmax) noexcept {
  using T = compute_t<St>;
  const hn::ScalableTag<T> d;
  constexpr std::size_t kL = kMaxLanesBytes / sizeof(T);
  const std::size_t L = hn::Lanes(d);
  HWY_ALIGN T tile[kSmallC * kL];
  for (std::size_t r0 = 0; r0 < rows; r0 += L) {
    const std::size_t n = std::min(L, rows - r0);
    tile_load(x + r0 * C, C, n, tile);
    ce_stats_cols(C, n, [&](std::size_t c) HWY_ATTR { return hn::Load(d, tile + c * L); }, lse + r0, entropy + r0,
                  argmax + r0, [&](std::size_t lane) HWY_ATTR {
                    scalar_table<St>().ce_stats(x + (r0 + lane) * C, Block{1, C, 1, 1}, lse + r0 + lane,
                                                entropy + r0 + lane, argmax + r0 + lane);
                  });
  }
}

#endif  // XENT_CPU_SMALL_INL_H_
