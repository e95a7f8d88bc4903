// lbfgs.cc: scikit-learn's multinomial logistic-regression objective over a whole training set,
// and L-BFGS with a strong-Wolfe line search (Nocedal & Wright, Numerical Optimization, 2nd ed.,
// algorithms 3.5, 3.6 and 7.4). See lbfgs.h for the formulas. Written here rather than taken from
// a library: Debian has no maintained C/C++ L-BFGS that takes our deterministic, BLAS-backed
// objective without copying it (liblbfgs is unmaintained upstream), and the method is ~150 lines.
#include "train/lbfgs.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "cpu/kernels.h"
#include "parallel.h"
#include "train/inputs.h"
#include "xent/losses.h"
#include "xent/train/train.h"

// LAPACK's Cholesky factorisation, from OpenBLAS (which bundles LAPACK; Debian's openblas.pc
// links it).
extern "C" void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
// LAPACK's symmetric eigensolver (divide and conquer), likewise.
extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                        double* work, const int* lwork, int* iwork, const int* liwork, int* info);

namespace xent::train {
namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

void gemm(bool trans_a, int m, int n, int k, const float* A, int lda, const float* B, int ldb, float beta, float* Cm,
          int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, A, lda, B, ldb, beta, Cm,
              ldc);
}
void gemm(bool trans_a, int m, int n, int k, const double* A, int lda, const double* B, int ldb, double beta,
          double* Cm, int ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, CblasNoTrans, m, n, k, 1.0, A, lda, B, ldb, beta, Cm,
              ldc);
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

template <class T>
SoftmaxObjective<T>::SoftmaxObjective(const LabeledImages& data, std::int64_t classes, double C, const SoftmaxModel* inputs)
    : N_(data.n), D_(data.features()), C_(classes), inv_cn_(1.0 / (C * static_cast<double>(data.n))), inputs_(inputs) {
  if (data.floats) {  // the model's float inputs (also for T = double: they are what predict sees)
    x_.resize(static_cast<std::size_t>(N_ * D_));
    std::vector<float> row(static_cast<std::size_t>(D_));
    for (std::int64_t i = 0; i < N_; ++i) {
      if (inputs) model_inputs(*inputs, data.values.data(), i, 1, row.data());
      else std::copy(data.values.begin() + i * D_, data.values.begin() + (i + 1) * D_, row.begin());  // as they are
      std::copy(row.begin(), row.end(), x_.begin() + i * D_);
    }
  } else {
    rows_.resize(static_cast<std::size_t>(N_));
    for (std::int64_t i = 0; i < N_; ++i) rows_[static_cast<std::size_t>(i)] = data.pixels.data() + i * D_;
  }
  y_ = data.labels;
  const std::int64_t chunks = ceil_div(N_, kFullBatchChunk);
  w_.resize(static_cast<std::size_t>(D_ * C_));
  b_.resize(static_cast<std::size_t>(C_));
  z_.resize(static_cast<std::size_t>(chunks * kFullBatchChunk * C_));
  dz_.resize(z_.size());
  g_part_.resize(static_cast<std::size_t>(chunks * D_ * C_));
  gb_part_.resize(static_cast<std::size_t>(chunks * C_));
  loss_part_.resize(static_cast<std::size_t>(chunks));
  correct_part_.resize(static_cast<std::size_t>(chunks));
  status_part_.resize(static_cast<std::size_t>(chunks));
}

template <class T>
Status SoftmaxObjective<T>::evaluate(const double* p, double* grad, ObjectiveValue* out) {
  const std::int64_t D = D_, C = C_, DC = D * C;
  const bool bytes = !rows_.empty();
  const auto& kernels = cpu::active_table<T>();
  const T pixel_scale = T(1) / T(255);
  if (bytes) {
    for (std::int64_t d = 0; d < D; ++d)
      for (std::int64_t c = 0; c < C; ++c) w_.data()[c * D + d] = static_cast<T>(p[d * C + c]);
  } else {
    for (std::int64_t j = 0; j < DC; ++j) w_.data()[j] = static_cast<T>(p[j]);
  }
  for (std::int64_t c = 0; c < C; ++c) b_[static_cast<std::size_t>(c)] = static_cast<T>(p[DC + c]);
  const std::int64_t chunks = ceil_div(N_, kFullBatchChunk);
  CrossEntropyOptions ce;
  ce.reduction = Reduction::kSum;
  detail::parallel_for(static_cast<std::size_t>(chunks), [&](std::size_t t) {
    const std::int64_t r0 = static_cast<std::int64_t>(t) * kFullBatchChunk, n = std::min(kFullBatchChunk, N_ - r0);
    const T* X = bytes ? nullptr : x_.data() + r0 * D;
    const std::uint8_t* const* rows = bytes ? rows_.data() + r0 : nullptr;
    const std::int32_t* y = y_.data() + r0;
    T* Z = z_.data() + static_cast<std::int64_t>(t) * kFullBatchChunk * C;
    T* dZ = dz_.data() + static_cast<std::int64_t>(t) * kFullBatchChunk * C;
    if (bytes) {
      kernels.byte_affine(rows, static_cast<std::size_t>(n), static_cast<std::size_t>(D), w_.data(),
                          static_cast<std::size_t>(C), pixel_scale, b_.data(), Z);
    } else {
      for (std::int64_t r = 0; r < n; ++r) std::memcpy(Z + r * C, b_.data(), static_cast<std::size_t>(C) * sizeof(T));
      gemm(false, static_cast<int>(n), static_cast<int>(C), static_cast<int>(D), X, static_cast<int>(D), w_.data(),
           static_cast<int>(C), T(1), Z, static_cast<int>(C));
    }
    std::int64_t hits = 0;
    for (std::int64_t r = 0; r < n; ++r) {
      const T* z = Z + r * C;
      std::int64_t best = 0;
      for (std::int64_t c = 1; c < C; ++c)
        if (z[c] > z[best]) best = c;
      hits += best == y[r];
    }
    correct_part_[t] = hits;
    T loss = 0;
    const DType dt = DTypeOf<T>::value;
    status_part_[t] = cross_entropy_fused(ConstTensorView(Z, dt, {n, C}), ConstTensorView(y, {n}), ce,
                                          TensorView(&loss, dt, Shape{}), TensorView(dZ, dt, {n, C}));
    loss_part_[t] = static_cast<double>(loss);
    if (grad) {
      T* g = g_part_.data() + static_cast<std::int64_t>(t) * DC;
      if (bytes)
        kernels.byte_affine_grad(rows, static_cast<std::size_t>(n), static_cast<std::size_t>(D), dZ,
                                 static_cast<std::size_t>(C), pixel_scale, g);
      else
        gemm(true, static_cast<int>(D), static_cast<int>(C), static_cast<int>(n), X, static_cast<int>(D), dZ,
             static_cast<int>(C), T(0), g, static_cast<int>(C));
      double* gb = gb_part_.data() + static_cast<std::int64_t>(t) * C;
      for (std::int64_t c = 0; c < C; ++c) gb[c] = 0;
      for (std::int64_t r = 0; r < n; ++r)
        for (std::int64_t c = 0; c < C; ++c) gb[c] += static_cast<double>(dZ[r * C + c]);
    }
  });
  // Chunk order, in double: the same sums for every thread count.
  double loss = 0;
  std::int64_t correct = 0;
  for (std::int64_t t = 0; t < chunks; ++t) {
    XENT_RETURN_IF_ERROR(status_part_[static_cast<std::size_t>(t)]);
    loss += loss_part_[static_cast<std::size_t>(t)];
    correct += correct_part_[static_cast<std::size_t>(t)];
  }
  const double inv_n = 1.0 / static_cast<double>(N_);
  double w2 = 0;
  for (std::int64_t j = 0; j < DC; ++j) w2 += p[j] * p[j];
  out->mean_ce = loss * inv_n;
  out->f = out->mean_ce + 0.5 * inv_cn_ * w2;
  out->correct = correct;
  if (grad) {
    for (std::int64_t j = 0; j < DC + C; ++j) grad[j] = 0;
    for (std::int64_t t = 0; t < chunks; ++t) {
      const T* g = g_part_.data() + t * DC;
      if (bytes) {  // C x D partials into the D x C gradient
        for (std::int64_t d = 0; d < D; ++d)
          for (std::int64_t c = 0; c < C; ++c) grad[d * C + c] += static_cast<double>(g[c * D + d]);
      } else {
        for (std::int64_t j = 0; j < DC; ++j) grad[j] += static_cast<double>(g[j]);
      }
      const double* gb = gb_part_.data() + t * C;
      for (std::int64_t c = 0; c < C; ++c) grad[DC + c] += gb[c];
    }
    for (std::int64_t j = 0; j < DC; ++j) grad[j] = grad[j] * inv_n + inv_cn_ * p[j];
    for (std::int64_t c = 0; c < C; ++c) grad[DC + c] *= inv_n;
    double gm = 0;
    for (std::int64_t j = 0; j < DC + C; ++j) gm = std::max(gm, std::fabs(grad[j]));
    out->grad_max = gm;
  }
  return ok_status();
}

template class SoftmaxObjective<float>;
template class SoftmaxObjective<double>;

namespace {

// A point on the search line: step a, value, directional derivative, and the gradient there.
struct LinePoint {
  double a = 0, f = 0, d = 0;
  ObjectiveValue v;
  std::vector<double> g;
};

// The minimiser of the cubic through (lo, hi) with their values and slopes, kept inside the
// middle 80% of the interval (else the midpoint).
double interpolate(const LinePoint& lo, const LinePoint& hi) {
  const double d1 = lo.d + hi.d - 3 * (lo.f - hi.f) / (lo.a - hi.a);
  const double disc = d1 * d1 - lo.d * hi.d;
  const double lo_a = std::min(lo.a, hi.a), hi_a = std::max(lo.a, hi.a), w = hi_a - lo_a;
  double a = 0.5 * (lo.a + hi.a);
  if (disc >= 0 && std::isfinite(disc)) {
    const double d2 = std::copysign(std::sqrt(disc), hi.a - lo.a);
    const double den = hi.d - lo.d + 2 * d2;
    if (den != 0) {
      const double c = hi.a - (hi.a - lo.a) * (hi.d + d2 - d1) / den;
      if (std::isfinite(c) && c > lo_a + 0.1 * w && c < hi_a - 0.1 * w) a = c;
    }
  }
  return a;
}

class LineSearch {
 public:
  LineSearch(const Evaluator& obj, const std::vector<double>& x, const std::vector<double>& dir, int* evals)
      : obj_(obj), x_(x), dir_(dir), evals_(evals), trial_(x.size()) {}

  // Strong Wolfe conditions with c1 = 1e-4, c2 = 0.9 (N&W algorithm 3.5 with zoom, 3.6). On
  // success *out holds the accepted point; on failure the best point with sufficient decrease, if
  // any, and false.
  Status search(const LinePoint& p0, double a1, LinePoint* out, bool* ok) {
    *ok = false;
    LinePoint prev = p0, cur;
    double a = a1;
    for (int i = 0; i < 25; ++i) {
      XENT_RETURN_IF_ERROR(eval(a, &cur));
      if (!(cur.f <= p0.f + kC1 * a * p0.d) || (i > 0 && cur.f >= prev.f)) return zoom(p0, prev, cur, out, ok);
      if (std::fabs(cur.d) <= -kC2 * p0.d) {
        *out = std::move(cur), *ok = true;
        return ok_status();
      }
      if (cur.d >= 0) return zoom(p0, cur, prev, out, ok);
      prev = cur;
      a *= 4;
    }
    *out = std::move(prev);  // sufficient decrease holds at prev
    *ok = out->a > 0;
    return ok_status();
  }

 private:
  static constexpr double kC1 = 1e-4, kC2 = 0.9;

  Status eval(double a, LinePoint* pt) {
    for (std::size_t i = 0; i < x_.size(); ++i) trial_[i] = x_[i] + a * dir_[i];
    pt->a = a;
    pt->g.resize(x_.size());
    XENT_RETURN_IF_ERROR(obj_(trial_.data(), pt->g.data(), &pt->v));
    ++*evals_;
    pt->f = std::isfinite(pt->v.f) ? pt->v.f : std::numeric_limits<double>::infinity();
    pt->d = dot(pt->g, dir_);
    return ok_status();
  }

  Status zoom(const LinePoint& p0, LinePoint lo, LinePoint hi, LinePoint* out, bool* ok) {
    for (int j = 0; j < 30 && std::fabs(hi.a - lo.a) > 1e-16 * std::max(1.0, lo.a); ++j) {
      LinePoint cur;
      XENT_RETURN_IF_ERROR(eval(interpolate(lo, hi), &cur));
      if (!(cur.f <= p0.f + kC1 * cur.a * p0.d) || cur.f >= lo.f) {
        hi = std::move(cur);
      } else {
        if (std::fabs(cur.d) <= -kC2 * p0.d) {
          *out = std::move(cur), *ok = true;
          return ok_status();
        }
        if (cur.d * (hi.a - lo.a) >= 0) hi = lo;
        lo = std::move(cur);
      }
    }
    // No Wolfe point found: accept lo when it decreases f (it satisfies sufficient decrease).
    *ok = lo.a > 0 && lo.f < p0.f;
    *out = std::move(lo);
    return ok_status();
  }

  const Evaluator& obj_;
  const std::vector<double>& x_;
  const std::vector<double>& dir_;
  int* evals_;
  std::vector<double> trial_;
};

}  // namespace

Status minimize_lbfgs(const Evaluator& obj, std::vector<double>& x, const LbfgsSettings& st,
                      const std::function<bool(int, const std::vector<double>&, const ObjectiveValue&)>& on_iteration,
                      LbfgsResult* result) {
  const std::size_t n = x.size();
  LbfgsResult r;
  LinePoint cur;
  cur.g.resize(n);
  XENT_RETURN_IF_ERROR(obj(x.data(), cur.g.data(), &cur.v));
  r.evaluations = 1;
  cur.f = cur.v.f;
  const int m = std::max(1, st.memory);
  std::vector<std::vector<double>> S, Y;  // newest last
  std::vector<double> rho;
  std::vector<double> dir(n), alpha(static_cast<std::size_t>(m));
  r.stop_reason = "max_iter";
  for (int k = 1; k <= st.max_iter; ++k) {
    if (cur.v.grad_max <= st.gtol) {
      r.stop_reason = "gtol";
      break;
    }
    // Two-loop recursion: dir = -H g, H0 = (s'y / y'y) I.
    for (std::size_t i = 0; i < n; ++i) dir[i] = -cur.g[i];
    for (std::size_t j = S.size(); j-- > 0;) {
      alpha[j] = rho[j] * dot(S[j], dir);
      for (std::size_t i = 0; i < n; ++i) dir[i] -= alpha[j] * Y[j][i];
    }
    if (!S.empty()) {
      const double gamma = dot(S.back(), Y.back()) / dot(Y.back(), Y.back());
      for (double& v : dir) v *= gamma;
    }
    for (std::size_t j = 0; j < S.size(); ++j) {
      const double beta = rho[j] * dot(Y[j], dir);
      for (std::size_t i = 0; i < n; ++i) dir[i] += (alpha[j] - beta) * S[j][i];
    }
    cur.a = 0;
    cur.d = dot(cur.g, dir);
    if (!(cur.d < 0)) {  // not a descent direction (rounding): restart from steepest descent
      S.clear(), Y.clear(), rho.clear();
      for (std::size_t i = 0; i < n; ++i) dir[i] = -cur.g[i];
      cur.d = dot(cur.g, dir);
    }
    const double a1 = S.empty() ? std::min(1.0, 1.0 / std::sqrt(dot(cur.g, cur.g))) : 1.0;
    LineSearch ls(obj, x, dir, &r.evaluations);
    LinePoint next;
    bool ok = false;
    XENT_RETURN_IF_ERROR(ls.search(cur, a1, &next, &ok));
    if (!ok) {
      r.stop_reason = "line search";  // f cannot be reduced along dir at this precision
      break;
    }
    std::vector<double> s(n), y(n);
    for (std::size_t i = 0; i < n; ++i) {
      s[i] = next.a * dir[i];
      x[i] += s[i];
      y[i] = next.g[i] - cur.g[i];
    }
    const double sy = dot(s, y);
    if (sy > 1e-12 * dot(y, y)) {  // curvature condition (holds under strong Wolfe; guard rounding)
      if (static_cast<int>(S.size()) == m) S.erase(S.begin()), Y.erase(Y.begin()), rho.erase(rho.begin());
      S.push_back(std::move(s)), Y.push_back(std::move(y)), rho.push_back(1.0 / sy);
    }
    const double f_old = cur.f;
    cur = std::move(next);
    r.iterations = k;
    if (on_iteration && !on_iteration(k, x, cur.v)) {
      r.stop_reason = "stopped";
      break;
    }
    if ((f_old - cur.f) / std::max({std::fabs(f_old), std::fabs(cur.f), 1.0}) <= st.ftol) {
      r.stop_reason = "ftol";
      break;
    }
  }
  r.value = cur.v;
  r.grad_max = cur.v.grad_max;
  *result = std::move(r);
  return ok_status();
}

Status Preconditioner::build(const LabeledImages& data, std::int64_t classes, const SoftmaxModel* inputs) {
  const std::int64_t D = data.features(), n = D + 1;
  n_ = n, C_ = classes;
  // A fixed sample (every step-th row, at most kSample rows): the factor is only a preconditioner.
  constexpr std::int64_t kSample = 8192;
  const std::int64_t step = std::max<std::int64_t>(1, data.n / kSample), m = (data.n + step - 1) / step;
  curvature_ = false;
  sample_.assign(static_cast<std::size_t>(m * n), 0.0);
  std::vector<double>& xs = sample_;
  for (std::int64_t r = 0; r < m; ++r) {
    double* row = xs.data() + r * n;
    if (data.floats) {
      std::vector<float> in(static_cast<std::size_t>(D));
      if (inputs) model_inputs(*inputs, data.values.data(), r * step, 1, in.data());
      else std::copy(data.values.begin() + r * step * D, data.values.begin() + (r * step + 1) * D, in.begin());
      for (std::int64_t k = 0; k < D; ++k) row[k] = in[static_cast<std::size_t>(k)];
    } else {
      const std::uint8_t* px = data.pixels.data() + r * step * D;
      for (std::int64_t k = 0; k < D; ++k) row[k] = static_cast<double>(px[k]) / 255.0;
    }
    row[D] = 1.0;
  }
  R_.assign(static_cast<std::size_t>(n * n), 0.0);
  // Upper triangle (row-major) of (1/m) X~^T X~.
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(n), static_cast<int>(m), 1.0 / static_cast<double>(m),
              xs.data(), static_cast<int>(n), 0.0, R_.data(), static_cast<int>(n));
  double trace = 0;
  for (std::int64_t k = 0; k < n; ++k) trace += R_[static_cast<std::size_t>(k * n + k)];
  // Ridge: pixels that never light up (or always move together) leave the Gram matrix singular.
  const double delta = 1e-3 * trace / static_cast<double>(n);
  for (std::int64_t k = 0; k < n; ++k) R_[static_cast<std::size_t>(k * n + k)] += delta;
  // Row-major upper = column-major lower: LAPACK's 'L' factor read row-major is R with P = R^T R.
  char uplo = 'L';
  int nn = static_cast<int>(n), info = 0;
  dpotrf_(&uplo, &nn, R_.data(), &nn, &info);
  if (info != 0) return internal_error(fmt::format("preconditioner: Cholesky failed (info {})", info));
  for (std::int64_t i = 0; i < n; ++i)  // dpotrf leaves the other triangle as it was
    for (std::int64_t j = 0; j < i; ++j) R_[static_cast<std::size_t>(i * n + j)] = 0;
  // Keep only the rows build_curvature uses: at most kCurvatureRows, evenly spaced.
  const std::int64_t keep = std::max<std::int64_t>(1, m / kCurvatureRows);
  m_ = (m + keep - 1) / keep;
  for (std::int64_t r = 1; r < m_; ++r) std::copy_n(xs.data() + r * keep * n, n, xs.data() + r * n);
  xs.resize(static_cast<std::size_t>(m_ * n));
  xs.shrink_to_fit();
  return ok_status();
}

namespace {

// Eigenvalues (ascending) and eigenvectors of the symmetric k x k matrix a (row-major, upper
// triangle read): on return a holds V^T row-major (row j is the j-th eigenvector).
Status symmetric_eigen(double* a, int k, double* values) {
  const char jobz = 'V', uplo = 'L';  // row-major upper = column-major lower
  int info = 0, lwork = -1, liwork = -1, iwork_size = 0;
  double work_size = 0;
  dsyevd_(&jobz, &uplo, &k, a, &k, values, &work_size, &lwork, &iwork_size, &liwork, &info);
  if (info != 0) return internal_error(fmt::format("preconditioner: eigensolver workspace query failed (info {})", info));
  lwork = static_cast<int>(work_size), liwork = iwork_size;
  std::vector<double> work(static_cast<std::size_t>(std::max(lwork, 1)));
  std::vector<int> iwork(static_cast<std::size_t>(std::max(liwork, 1)));
  dsyevd_(&jobz, &uplo, &k, a, &k, values, work.data(), &lwork, iwork.data(), &liwork, &info);
  if (info != 0) return internal_error(fmt::format("preconditioner: eigensolver failed (info {})", info));
  return ok_status();
}

}  // namespace

Status Preconditioner::build_curvature(const double* p, double lambda) {
  const std::int64_t n = n_, C = C_;
  // The sample build kept; G in two fixed halves of its rows (pool tasks), added in order.
  const std::int64_t mc = m_;
  std::vector<double> xw(sample_), z(static_cast<std::size_t>(mc * C));
  std::vector<double> w(static_cast<std::size_t>(mc));
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(mc), static_cast<int>(C), static_cast<int>(n), 1.0,
              xw.data(), static_cast<int>(n), p, static_cast<int>(C), 0.0, z.data(), static_cast<int>(C));
  std::vector<double> A(static_cast<std::size_t>(C * C), 0.0), a(static_cast<std::size_t>(C));
  double wsum = 0;
  for (std::int64_t r = 0; r < mc; ++r) {  // the row's softmax, its variance w and A's sum, in row order
    double* zr = z.data() + r * C;
    const double mx = *std::max_element(zr, zr + C);
    double s = 0;
    for (std::int64_t c = 0; c < C; ++c) s += (zr[c] = std::exp(zr[c] - mx));
    double sq = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      zr[c] /= s;
      sq += zr[c] * zr[c];
    }
    w[static_cast<std::size_t>(r)] = std::max(0.0, 1.0 - sq);
    wsum += w[static_cast<std::size_t>(r)];
    for (std::int64_t i = 0; i < C; ++i) {
      A[static_cast<std::size_t>(i * C + i)] += zr[i];
      for (std::int64_t j = 0; j < C; ++j) A[static_cast<std::size_t>(i * C + j)] -= zr[i] * zr[j];
    }
    const double sw = std::sqrt(w[static_cast<std::size_t>(r)]);
    for (std::int64_t k = 0; k < n; ++k) xw[static_cast<std::size_t>(r * n + k)] *= sw;
  }
  if (!(wsum > 0)) return ok_status();  // every sampled row saturated: keep the current change of variables
  for (double& v : A) v /= wsum;
  // G = (1/mc) Xw^T Xw, upper triangle, as two halves of the rows added in order.
  const std::int64_t half = mc / 2;
  std::vector<double> G(static_cast<std::size_t>(2 * n * n), 0.0);
  detail::parallel_for(2, [&](std::size_t t) {
    const std::int64_t r0 = t == 0 ? 0 : half, rows = t == 0 ? half : mc - half;
    if (rows > 0)
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(n), static_cast<int>(rows),
                  1.0 / static_cast<double>(mc), xw.data() + r0 * n, static_cast<int>(n), 0.0, G.data() + t * n * n,
                  static_cast<int>(n));
  });
  for (std::int64_t k = 0; k < n * n; ++k) G[static_cast<std::size_t>(k)] += G[static_cast<std::size_t>(n * n + k)];
  G.resize(static_cast<std::size_t>(n * n));
  std::vector<double> g(static_cast<std::size_t>(n));
  XENT_RETURN_IF_ERROR(symmetric_eigen(G.data(), static_cast<int>(n), g.data()));
  XENT_RETURN_IF_ERROR(symmetric_eigen(A.data(), static_cast<int>(C), a.data()));
  V_ = std::move(G), U_ = std::move(A);
  S_.resize(static_cast<std::size_t>(n * C));
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t k = 0; k < C; ++k)
      S_[static_cast<std::size_t>(j * C + k)] =
          1.0 / std::sqrt(std::max(g[static_cast<std::size_t>(j)], 0.0) * std::max(a[static_cast<std::size_t>(k)], 0.0) + lambda);
  t1_.resize(static_cast<std::size_t>(n * C)), t2_.resize(static_cast<std::size_t>(n * C));
  curvature_ = true;
  return ok_status();
}

// out = V ((V^T in U) .* S) U^T, or with ./ S for the inverse. V_ and U_ hold V^T and U^T. Two
// fixed halves of the rows per pass, as pool tasks (the products have only C columns, too thin for
// OpenBLAS to spread; each output element is one task's, so the bits do not depend on the thread
// count). `in` is read whole before `out` is written: they may be the same array.
void Preconditioner::kronecker(const double* in, double* out, bool inverse) const {
  const int n = static_cast<int>(n_), C = static_cast<int>(C_), half = n / 2;
  auto part = [&](std::size_t t) { return std::pair<int, int>(t == 0 ? 0 : half, t == 0 ? half : n - half); };
  detail::parallel_for(2, [&](std::size_t t) {  // rows [r0, r0 + r) of ((V^T in) U .* S) U^T
    const auto [r0, r] = part(t);
    double* a = t1_.data() + static_cast<std::ptrdiff_t>(r0) * C;
    double* b = t2_.data() + static_cast<std::ptrdiff_t>(r0) * C;
    const double* s = S_.data() + static_cast<std::ptrdiff_t>(r0) * C;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, C, n, 1.0, V_.data() + static_cast<std::ptrdiff_t>(r0) * n, n,
                in, C, 0.0, a, C);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r, C, C, 1.0, a, C, U_.data(), C, 0.0, b, C);
    for (std::ptrdiff_t k = 0; k < static_cast<std::ptrdiff_t>(r) * C; ++k) b[k] = inverse ? b[k] / s[k] : b[k] * s[k];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, C, C, 1.0, b, C, U_.data(), C, 0.0, a, C);
  });
  detail::parallel_for(2, [&](std::size_t t) {  // rows [r0, r0 + r) of V t1 = (columns of V^T)^T t1
    const auto [r0, r] = part(t);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, C, n, 1.0, V_.data() + r0, n, t1_.data(), C, 0.0,
                out + static_cast<std::ptrdiff_t>(r0) * C, C);
  });
}

void Preconditioner::to_params(const double* q, double* p) const {
  if (curvature_) return kronecker(q, p, false);
  std::memcpy(p, q, static_cast<std::size_t>(n_ * C_) * sizeof(double));
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, static_cast<int>(n_), static_cast<int>(C_),
              1.0, R_.data(), static_cast<int>(n_), p, static_cast<int>(C_));
}

void Preconditioner::to_q_grad(double* g) const {
  if (curvature_) return kronecker(g, g, false);  // T is symmetric; kronecker reads `in` before it writes `out`
  cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, static_cast<int>(n_), static_cast<int>(C_),
              1.0, R_.data(), static_cast<int>(n_), g, static_cast<int>(C_));
}

void Preconditioner::to_q(const double* p, double* q) const {
  if (curvature_) return kronecker(p, q, true);
  std::memcpy(q, p, static_cast<std::size_t>(n_ * C_) * sizeof(double));
  cblas_dtrmm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, static_cast<int>(n_), static_cast<int>(C_),
              1.0, R_.data(), static_cast<int>(n_), q, static_cast<int>(C_));
}

template <class T>
Status minimize_softmax(SoftmaxObjective<T>& obj, const LabeledImages& data, Precondition precondition,
                        std::vector<double>& p, const LbfgsSettings& settings,
                        const std::function<bool(int, const std::vector<double>&, const ObjectiveValue&)>& on_iteration,
                        LbfgsResult* result) {
  if (p.size() != static_cast<std::size_t>(obj.size()))
    return invalid_argument(fmt::format("L-BFGS: {} parameters given, the problem has {}", p.size(), obj.size()));
  if (precondition == Precondition::kNone) {
    Evaluator f = [&](const double* x, double* g, ObjectiveValue* v) { return obj.evaluate(x, g, v); };
    return minimize_lbfgs(f, p, settings, on_iteration, result);
  }
  Preconditioner pre;
  XENT_RETURN_IF_ERROR(pre.build(data, (obj.size() / (data.features() + 1)), obj.inputs()));
  // pp = T(pp_of): the parameters of the last point evaluated, which is usually the point an
  // iteration accepts, so on_iteration does not transform it again.
  std::vector<double> q(p.size()), pp(p.size()), pp_of(p.size());
  Evaluator f = [&](const double* x, double* g, ObjectiveValue* v) {
    pre.to_params(x, pp.data());
    std::copy_n(x, pp_of.size(), pp_of.data());
    XENT_RETURN_IF_ERROR(obj.evaluate(pp.data(), g, v));
    if (g) pre.to_q_grad(g);
    return ok_status();
  };
  constexpr std::size_t kStages = std::size(kCurvatureStages);
  LbfgsResult total;
  int done = 0;
  for (std::size_t stage = 0;; ++stage) {
    const bool last = precondition != Precondition::kCurvature || stage == kStages;
    LbfgsSettings st = settings;
    st.max_iter = settings.max_iter - done;
    if (!last) st.max_iter = std::min(st.max_iter, kCurvatureStages[stage]);
    if (stage > 0) XENT_RETURN_IF_ERROR(pre.build_curvature(p.data(), obj.penalty()));
    pre.to_q(p.data(), q.data());
    auto on_q = [&](int k, const std::vector<double>& x, const ObjectiveValue& v) {
      if (!on_iteration) return true;
      if (x != pp_of) pre.to_params(x.data(), pp.data()), pp_of = x;
      return on_iteration(done + k, pp, v);
    };
    LbfgsResult r;
    XENT_RETURN_IF_ERROR(minimize_lbfgs(f, q, st, on_q, &r));
    pre.to_params(q.data(), p.data());
    done += r.iterations;
    total.evaluations += r.evaluations;
    total.iterations = done;
    total.value = r.value, total.grad_max = r.grad_max, total.stop_reason = r.stop_reason;
    if (last || r.stop_reason != "max_iter" || done >= settings.max_iter) break;
  }
  *result = std::move(total);
  return ok_status();
}

template Status minimize_softmax<float>(SoftmaxObjective<float>&, const LabeledImages&, Precondition, std::vector<double>&,
                                        const LbfgsSettings&,
                                        const std::function<bool(int, const std::vector<double>&, const ObjectiveValue&)>&,
                                        LbfgsResult*);
template Status minimize_softmax<double>(SoftmaxObjective<double>&, const LabeledImages&, Precondition, std::vector<double>&,
                                         const LbfgsSettings&,
                                         const std::function<bool(int, const std::vector<double>&, const ObjectiveValue&)>&,
                                         LbfgsResult*);

}  // namespace xent::train
