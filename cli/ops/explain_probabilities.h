// explain_probabilities.h (cli/ops): the `xent explain` views that start from probabilities
// rather than logits: cross-entropy of predicted probabilities (the seed's loop form, one-hot dot
// product with its diagonal, and the library's value side by side), `explain nll` and
// `explain bce` with its probability-vs-loss curve. Display only; the library is called to check.
#pragma once

#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace xent::cli::ops {

struct ProbArgs {
  std::string probs, target, dtype;
  std::int64_t ignore_index = -100;
  double eps = 0.0;  // 0: the log clamped at -100, as the op
  double label_smoothing = 0.0;
  bool weighted = false;
};

// `xent explain cross-entropy --probs ...`.
void explain_probabilities(const ProbArgs& a);

// Add `explain nll` and `explain bce` under the explain app.
void add_explain_nll(CLI::App* explain);
void add_explain_bce(CLI::App* explain);

}  // namespace xent::cli::ops
