// bce_hwy.cc: the SIMD binary cross-entropy kernels (on probabilities and with logits, forward and
// backward over contiguous runs), compiled once per target through foreach_target; fills its
// entries of each ISA's kernel table (tables_hwy.cc). Elementwise: no row machinery.
#include "cpu/hwy_targets.h"  // first: the target set

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/bce_hwy.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/highway.h"
#include "cpu/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace xent::cpu {
namespace HWY_NAMESPACE {
#include "cpu/families-inl.h"

#if XENT_TARGET_HAS_KERNELS

// ---------------------------------------------------------------------------------------------
// binary cross-entropy (elementwise)
//
// One vector of T at a time with Highway's Exp / Log / Log1p (<= 4 ulp), the scalar twin's
// formulas term for term; each element's loss goes out as double. A vector holding an input the
// vector formulas do not reproduce exactly as the scalar twin does (BCE: p below the smallest
// normal number, including 0, or p == 1, where the -100 clamps act; with logits: a non-finite x,
// PyTorch's NaN cases) is handed to the scalar twin whole, as is the tail of the run.

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

// A broadcast operand: p[i] (step 1) or p[0] (step 0).
template <class D>
HWY_INLINE hn::Vec<D> load_bcast(D d, const hn::TFromD<D>* p, std::size_t step, std::size_t i) {
  return step == 0 ? hn::Set(d, p[0]) : hn::LoadU(d, p + i);
}

template <class T, bool kLogits>
void bce_vec(const BceArgs<T>& a, std::size_t n) noexcept {
  const auto& scalar = scalar_table<T>();
  const auto scalar_fn = kLogits ? scalar.bce_logits : scalar.bce;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const std::size_t L = hn::Lanes(d);
  HWY_ALIGN T lbuf[kMaxLanesBytes / sizeof(T)];
  const V one = hn::Set(d, T(1)), zero = hn::Zero(d);
  const V vscale = hn::Set(d, static_cast<T>(a.dloss_scale));
  std::size_t i = 0;
  for (; i + L <= n; i += L) {
    const V x = hn::LoadU(d, a.x + i);
    bool ok;
    if constexpr (kLogits) {
      ok = hn::AllTrue(d, hn::IsFinite(x));
    } else {
      ok = hn::AllTrue(d, hn::And(hn::Ge(x, hn::Set(d, std::numeric_limits<T>::min())), hn::Lt(x, one)));
    }
    if (!ok) {
      scalar_fn(bce_args_at(a, i), L);
      continue;
    }
    const V t = hn::LoadU(d, a.target + i);
    const V w = a.weight != nullptr ? load_bcast(d, a.weight, a.w_step, i) : one;
    const V pw = a.pos_weight != nullptr ? load_bcast(d, a.pos_weight, a.pw_step, i) : one;
    if (a.elem_loss != nullptr) {
      V l;
      if constexpr (kLogits) {
        // m = max(-x, 0); softplus(-x) = log(exp(-m) + exp(-x - m)) + m; both exps' arguments <= 0.
        const V m = hn::Max(hn::Neg(x), zero);
        const V sp = hn::Add(hn::Log(d, hn::Add(hn::Exp(d, hn::Neg(m)), hn::Exp(d, hn::Sub(hn::Neg(x), m)))), m);
        const V lw = a.pos_weight != nullptr ? hn::MulAdd(hn::Sub(pw, one), t, one) : one;
        l = hn::MulAdd(lw, sp, hn::Mul(hn::Sub(one, t), x));
      } else {
        const V clamp = hn::Set(d, T(-100));
        const V lp = hn::Max(hn::Log(d, x), clamp);
        const V l1p = hn::Max(hn::Log1p(d, hn::Neg(x)), clamp);
        l = hn::Sub(hn::Mul(hn::Sub(t, one), l1p), hn::Mul(t, lp));
      }
      if (a.weight != nullptr) l = hn::Mul(l, w);
      hn::Store(l, d, lbuf);
      for (std::size_t k = 0; k < L; ++k) a.elem_loss[i + k] = static_cast<double>(lbuf[k]);
    }
    if (a.dx != nullptr) {
      const V g = a.dloss != nullptr ? hn::Mul(hn::LoadU(d, a.dloss + i), vscale) : vscale;
      V dd;
      if constexpr (kLogits) {
        // sigmoid(x) from e = exp(-|x|) in (0, 1]: 1 / (1 + e) for x >= 0, e / (1 + e) below.
        const V e = hn::Exp(d, hn::Neg(hn::Abs(x)));
        const V inv = hn::Div(one, hn::Add(one, e));
        const V sig = hn::IfThenElse(hn::Ge(x, zero), inv, hn::Mul(e, inv));
        if (a.pos_weight != nullptr) {
          const V pt = hn::Mul(pw, t);
          dd = hn::Mul(hn::Sub(hn::Mul(hn::Sub(hn::Add(pt, one), t), sig), pt), g);
        } else {
          dd = hn::Mul(hn::Sub(sig, t), g);
        }
      } else {
        // PyTorch's denominator clamp is a float constant even for double data.
        const V eps = hn::Set(d, static_cast<T>(static_cast<double>(1e-12f)));
        dd = hn::Mul(g, hn::Div(hn::Sub(x, t), hn::Max(hn::Mul(hn::Sub(one, x), x), eps)));
      }
      if (a.weight != nullptr) dd = hn::Mul(dd, w);
      hn::StoreU(dd, d, a.dx + i);
    }
  }
  if (i < n) scalar_fn(bce_args_at(a, i), n - i);
}

template <class T>
void bce(const BceArgs<T>& a, std::size_t n) noexcept { bce_vec<T, false>(a, n); }
template <class T>
void bce_logits(const BceArgs<T>& a, std::size_t n) noexcept { bce_vec<T, true>(a, n); }
void fill_bce(KernelTable<float>* t) noexcept {
  t->bce = &bce<float>;
  t->bce_logits = &bce_logits<float>;
}
void fill_bce(KernelTable<double>* t) noexcept {
  t->bce = &bce<double>;
  t->bce_logits = &bce_logits<double>;
}

#endif  // XENT_TARGET_HAS_KERNELS

}  // namespace HWY_NAMESPACE
}  // namespace xent::cpu
HWY_AFTER_NAMESPACE();
