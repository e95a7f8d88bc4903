// lbfgs.h (internal): full-batch softmax regression with scikit-learn's objective, and the L-BFGS
// minimiser with a strong-Wolfe line search that `xent train --optimizer lbfgs` uses. Not a general
// optimisation library: one objective, parameters as one flat double vector.
//
// Objective (scikit-learn 1.2 LogisticRegression(solver='lbfgs', multi_class='multinomial')
// minimises sum_i CE_i + ||W||^2 / (2 C); this is that divided by N, with the same minimiser):
//   f(W, b) = (1/N) sum_i [logsumexp(z_i) - z_i[y_i]] + ||W||^2 / (2 C N),   z_i = x_i W + b
//   df/dW = (1/N) X^T (P - Y) + W / (C N),  df/db = (1/N) sum_i (p_i - y_i)
// with x_i the pixels / 255. Parameters: p = [W (D x C, row-major) | b (C)].
//
// Evaluation runs in T = float or double. Pixels stay bytes where the data set holds them: each
// fixed chunk of kFullBatchChunk rows does Z = X W + b and its partial (X^T dZ)^T with the kernel
// table's byte_affine entries, which apply the 1/255. Float features are held as a T matrix and go
// through BLAS gemm (partial X^T dZ). Between the two, xent's fused cross-entropy (sum); one task per
// chunk; the partials are added in chunk order in double. So the value and gradient do not depend
// on the thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "xent/io/idx.h"
#include "xent/status.h"
#include "train/aligned.h"
#include "xent/train/model.h"
#include "xent/train/train.h"

namespace xent::train {

using io::LabeledImages;

inline constexpr std::int64_t kFullBatchChunk = 512;

struct ObjectiveValue {
  double f = 0;         // the penalised objective
  double mean_ce = 0;   // (1/N) sum_i CE_i
  std::int64_t correct = 0;  // argmax hits on the training rows
  double grad_max = 0;  // max |df/dp| (when the gradient was asked for)
};

template <class T>
class SoftmaxObjective {
 public:
  // Pixels: keeps pointers to data's rows (data must outlive the objective). Float features: copies
  // them as the model's inputs (normalised as `inputs` records, or as they are when it is null)
  // into a T matrix. C > 0.
  SoftmaxObjective(const LabeledImages& data, std::int64_t classes, double C, const SoftmaxModel* inputs = nullptr);
  const SoftmaxModel* inputs() const { return inputs_; }
  std::int64_t size() const { return (D_ + 1) * C_; }
  std::int64_t rows() const { return N_; }
  double penalty() const { return inv_cn_; }  // 1 / (C N): the L2 term is penalty() ||W||^2 / 2
  // f and, when grad is not null, its gradient (size() doubles) at p.
  Status evaluate(const double* p, double* grad, ObjectiveValue* out);

 private:
  std::int64_t N_, D_, C_;
  double inv_cn_;
  const SoftmaxModel* inputs_;
  std::vector<T> x_;                   // float features: N x D
  std::vector<const std::uint8_t*> rows_;  // pixels: the N rows
  std::vector<std::int32_t> y_;
  CacheAligned<T> w_;                  // W in T; pixels: transposed (C x D)
  std::vector<T> b_;                   // b in T
  std::vector<T> z_, dz_, g_part_;     // per chunk: kFullBatchChunk x C, kFullBatchChunk x C, D x C (pixels: C x D)
  std::vector<double> gb_part_, loss_part_;
  std::vector<std::int64_t> correct_part_;
  std::vector<Status> status_part_;
};

struct LbfgsSettings {
  int max_iter = 1000;
  int memory = 10;             // correction pairs (scipy's maxcor)
  double gtol = 1e-10;         // stop when max |grad f| <= gtol
  double ftol = 1e-12;         // stop when (f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol
};

struct LbfgsResult {
  int iterations = 0, evaluations = 0;
  ObjectiveValue value;
  double grad_max = 0;
  std::string stop_reason;
};

// f and its gradient at x (both n doubles).
using Evaluator = std::function<Status(const double* x, double* grad, ObjectiveValue* out)>;

// Minimises f from x (updated in place); stops when value.grad_max <= gtol, on ftol, at max_iter,
// or when the line search cannot reduce f (which happens at float32's precision near the
// optimum; not an error). `on_iteration(k, x, value)` runs after iteration k (1-based); returning
// false stops (stop_reason "stopped").
Status minimize_lbfgs(const Evaluator& f, std::vector<double>& x, const LbfgsSettings& settings,
                      const std::function<bool(int, const std::vector<double>&, const ObjectiveValue&)>& on_iteration,
                      LbfgsResult* result);

// A change of variables p = T q under which L-BFGS runs on q (f and the stopping test are
// unchanged). Two kinds, with p and q read as (D + 1) x C row-major matrices ([W | b]):
// - inputs (build): T = R^-1, R the Cholesky factor of (1/m) sum x~ x~^T + delta I over a fixed
//   sample of m training rows (x~ = [x, 1], the pixels / 255 and a 1 for the bias): the
//   Gauss-Newton curvature up to the softmax's factor;
// - curvature (build_curvature, at a point p): T = H^(-1/2) for the Kronecker model
//   H = A (x) G + lambda I of the Hessian at p, over the sample: G = (1/m) sum w_i x~_i x~_i^T
//   with w_i = 1 - sum_c p_ic^2 (row i's softmax variance: ~0 where it saturates),
//   A = (sum_i diag(p_i) - p_i p_i^T) / sum_i w_i, lambda = 1 / (C N) (the penalty). With
//   A = U diag(a) U^T and G = V diag(g) V^T: T q = V ((V^T q U) .* S) U^T, S_jk = (g_j a_k +
//   lambda)^(-1/2). Rebuilt as the iterate moves, it sees where the softmax saturates, which the
//   inputs alone cannot (docs/training.md has the evaluation counts).
class Preconditioner {
 public:
  // `inputs`: the model whose normalization turns float rows into inputs (null for pixels).
  Status build(const LabeledImages& data, std::int64_t classes, const SoftmaxModel* inputs = nullptr);
  // After build: the curvature kind at p (size (D + 1) x C), with lambda the penalty's 1 / (C N).
  Status build_curvature(const double* p, double lambda);
  void to_params(const double* q, double* p) const;   // p = T q
  void to_q_grad(double* g) const;                     // g <- T^T g
  void to_q(const double* p, double* q) const;         // q = T^-1 p

 private:
  void kronecker(const double* in, double* out, bool inverse) const;
  bool curvature_ = false;
  static constexpr std::int64_t kCurvatureRows = 4096;
  std::int64_t n_ = 0, C_ = 0, m_ = 0;  // n = D + 1; m rows kept for build_curvature
  std::vector<double> sample_;  // m x n, the rows x~: at most kCurvatureRows of build's sample, evenly spaced
  std::vector<double> R_;       // inputs: n x n, upper triangular, row-major
  std::vector<double> V_, U_, S_;  // curvature: n x n, C x C, n x C (row-major)
  mutable std::vector<double> t1_, t2_;  // n x C scratch
};

// minimize_lbfgs on obj under the change of variables `precondition` names (train.h). With
// kCurvature the run is in stages (kCurvatureStages): each stage after the first rebuilds the
// curvature model at the current point and restarts L-BFGS's memory; iterations and evaluations
// are counted across stages and on_iteration sees the global iteration number.
inline constexpr int kCurvatureStages[] = {10, 20, 40, 80, 160};  // iterations before each rebuild
template <class T>
Status minimize_softmax(SoftmaxObjective<T>& obj, const LabeledImages& data, Precondition precondition,
                        std::vector<double>& p, const LbfgsSettings& settings,
                        const std::function<bool(int, const std::vector<double>&, const ObjectiveValue&)>& on_iteration,
                        LbfgsResult* result);

extern template class SoftmaxObjective<float>;
extern template class SoftmaxObjective<double>;

}  // namespace xent::train
