// test_vs_reference.cc: every op x dtype x option combination against the long-double oracle, on
// fixed-seed random inputs, once for every instruction set this CPU supports.
//
// The shapes, dims, reductions and label smoothings come from the shared case table
// (tests/cases/cases.json, also read by the gradient checks and the PyTorch comparison). Options
// added here: class weight on/off, ignore_index hit / miss / equal to a valid class, int32 / int64
// targets, probability targets (normalised or not), BCE weight and pos_weight broadcast from several
// shapes; plus this suite's own sweep of softmax row lengths 1..67, 1023, 1025 (tails of every
// vector width) and wide / offset logits. Edge values live in test_edge_cases.cc.
#include <optional>

#include "cases/cases.h"
#include "op_checks.h"
#include "test_util.h"

namespace xent::test {
namespace {

class VsReference : public IsaTest {};

const cases::Table& table() { return cases::table(); }

ref::Reduction to_ref(cases::Reduction r) {
  return r == cases::Reduction::kNone ? ref::Reduction::kNone
         : r == cases::Reduction::kMean ? ref::Reduction::kMean
                                        : ref::Reduction::kSum;
}

template <class T>
void softmax_cases(std::uint64_t seed) {
  Rng rng(seed);
  // Every row length 1..67 and two around 1024, along the last dim.
  std::vector<std::int64_t> lengths;
  for (std::int64_t C = 1; C <= 67; ++C) lengths.push_back(C);
  lengths.push_back(1023);
  lengths.push_back(1025);
  for (std::int64_t C : lengths) {
    SCOPED_TRACE(std::string(type_name<T>()) + " softmax family, shape [3, " + std::to_string(C) + "], dim 1");
    check_softmax_family(rng.uniform_buf<T>({3, C}, -5, 5), 1, rng);
  }
  // The shared table's shapes, each along every dim it lists (0-d, empty and 4-d inputs included).
  for (const cases::SoftmaxCase& c : table().softmax) {
    for (std::int64_t dim : c.dims) {
      SCOPED_TRACE(std::string(type_name<T>()) + " softmax family, shape " + shape_str(c.shape) + ", dim " +
                   std::to_string(dim));
      check_softmax_family(rng.uniform_buf<T>(c.shape, -8, 8), dim, rng);
    }
  }
  // Wide logits (|x| up to 100) and a large offset (x around 1000).
  {
    SCOPED_TRACE(std::string(type_name<T>()) + " softmax family, logits in [-100, 100]");
    check_softmax_family(rng.uniform_buf<T>({4, 33}, -100, 100), -1, rng);
  }
  {
    SCOPED_TRACE(std::string(type_name<T>()) + " softmax family, logits in [995, 1005]");
    check_softmax_family(rng.uniform_buf<T>({4, 33}, 995, 1005), -1, rng);
  }
}

TEST_P(VsReference, SoftmaxFamily) {
  if (cases::has_dtype("float32")) softmax_cases<float>(11);
  if (cases::has_dtype("float64")) softmax_cases<double>(12);
}

template <class T, class I>
void cross_entropy_cases(std::uint64_t seed) {
  Rng rng(seed);
  for (const ref::Shape& shape : table().class_losses) {
    const std::int64_t C = cases::classes(shape);
    const ref::Shape tshape = shape.size() == 1 ? ref::Shape{} : ref::shape_without(shape, 1);
    const Buf<T> x = rng.uniform_buf<T>(shape, -6, 6);
    for (int with_weight = 0; with_weight < 2; ++with_weight) {
      std::optional<Buf<T>> weight;
      if (with_weight) weight = rng.uniform_buf<T>({C}, 0.1, 3.0);
      // ignore_index: hit (-100 present), miss (-100 absent), a valid class that occurs.
      for (int mode = 0; mode < 3; ++mode) {
        const std::int64_t ignore = mode == 2 ? C / 2 : -100;
        std::optional<std::int64_t> written;  // the value written at ~1/4 of the positions
        if (mode != 1) written = ignore;
        const Buf<I> t = random_targets<I>(rng, tshape, C, written);
        for (cases::Reduction cr : table().reductions) {
          const ref::Reduction red = to_ref(cr);
          for (double eps : table().label_smoothing) {
            SCOPED_TRACE(std::string(type_name<T>()) + " cross_entropy " + type_name<I>() + " targets, shape " +
                         shape_str(shape) + (with_weight ? ", weight" : "") + ", ignore_index " +
                         std::to_string(ignore) + (mode == 0 ? " (hit)" : mode == 1 ? " (miss)" : " (valid class)") +
                         ", reduction " + name_of(red) + ", label_smoothing " + std::to_string(eps));
            check_cross_entropy<T, I>(x, t, weight, CeCase{ignore, red, eps}, rng);
          }
          SCOPED_TRACE(std::string(type_name<T>()) + " nll_loss " + type_name<I>() + " targets, shape " +
                       shape_str(shape) + (with_weight ? ", weight" : "") + ", ignore mode " + std::to_string(mode) +
                       ", reduction " + name_of(red));
          // nll_loss on log-probabilities (any values are accepted; use log_softmax-like ones).
          check_nll<T, I>(Buf<T>::from_ref(ref::log_softmax(x.to_ref(), shape.size() == 1 ? 0 : 1)), t, weight,
                          ignore, red, rng);
        }
      }
    }
  }
}

TEST_P(VsReference, CrossEntropyAndNllClassIndices) {
  if (cases::has_dtype("float32")) {
    cross_entropy_cases<float, std::int32_t>(21);
    cross_entropy_cases<float, std::int64_t>(22);
  }
  if (cases::has_dtype("float64")) {
    cross_entropy_cases<double, std::int32_t>(23);
    cross_entropy_cases<double, std::int64_t>(24);
  }
}

template <class T>
void prob_target_cases(std::uint64_t seed) {
  Rng rng(seed);
  for (const ref::Shape& shape : table().class_losses) {
    const std::int64_t C = cases::classes(shape);
    const Buf<T> x = rng.uniform_buf<T>(shape, -6, 6);
    // Probability rows, and arbitrary non-negative targets (PyTorch does not require a sum of 1).
    const Buf<T> probs = rng.prob_buf<T>(shape);
    const Buf<T> loose = rng.uniform_buf<T>(shape, 0.0, 2.0);
    for (int with_weight = 0; with_weight < 2; ++with_weight) {
      std::optional<Buf<T>> weight;
      if (with_weight) weight = rng.uniform_buf<T>({C}, 0.1, 3.0);
      for (cases::Reduction cr : table().reductions) {
        const ref::Reduction red = to_ref(cr);
        for (double eps : table().label_smoothing) {
          for (int kind = 0; kind < 2; ++kind) {
            SCOPED_TRACE(std::string(type_name<T>()) + " cross_entropy probability targets" +
                         (kind ? " (unnormalised)" : "") + ", shape " + shape_str(shape) +
                         (with_weight ? ", weight" : "") + ", reduction " + name_of(red) +
                         ", label_smoothing " + std::to_string(eps));
            check_cross_entropy_probs<T>(x, kind ? loose : probs, weight, red, eps, rng);
          }
        }
      }
    }
  }
}

TEST_P(VsReference, CrossEntropyProbabilityTargets) {
  if (cases::has_dtype("float32")) prob_target_cases<float>(31);
  if (cases::has_dtype("float64")) prob_target_cases<double>(32);
}

template <class T>
void bce_cases(std::uint64_t seed) {
  Rng rng(seed);
  for (const ref::Shape& shape : table().elementwise_losses) {
    // Weight shapes that broadcast (NumPy rules) to `shape`: none, (1), last dim, full, (N, 1...),
    // (1, last) with a leading 1.
    std::vector<std::optional<ref::Shape>> wshapes = {std::nullopt, ref::Shape{1}, ref::Shape{shape.back()}, shape};
    if (shape.size() >= 2) {
      ref::Shape col(shape.size(), 1);
      col[0] = shape[0];
      wshapes.push_back(col);
      ref::Shape row(shape.size(), 1);
      row.back() = shape.back();
      wshapes.push_back(row);
    }
    const Buf<T> p = rng.uniform_buf<T>(shape, 0.0, 1.0);
    Buf<T> p_edges = p;  // exact 0 and 1 exercise the -100 clamps and the 1e-12 epsilon
    p_edges.v[0] = 0;
    if (p_edges.v.size() > 1) p_edges.v[1] = 1;
    const Buf<T> t_soft = rng.uniform_buf<T>(shape, 0.0, 1.0);
    Buf<T> t_hard(shape);
    for (auto& v : t_hard.v) v = static_cast<T>(rng.integer(0, 1));
    const Buf<T> x = rng.uniform_buf<T>(shape, -8, 8);
    for (const auto& ws : wshapes) {
      std::optional<Buf<T>> weight;
      if (ws) weight = rng.uniform_buf<T>(*ws, 0.1, 3.0);
      const std::string wname = ws ? ", weight " + shape_str(*ws) : "";
      for (cases::Reduction cr : table().reductions) {
        const ref::Reduction red = to_ref(cr);
        for (int kind = 0; kind < 3; ++kind) {
          const Buf<T>& pin = kind == 2 ? p_edges : p;
          const Buf<T>& t = kind == 1 ? t_hard : t_soft;
          SCOPED_TRACE(std::string(type_name<T>()) + " binary_cross_entropy, shape " + shape_str(shape) + wname +
                       ", reduction " + name_of(red) + (kind == 1 ? ", 0/1 targets" : kind == 2 ? ", p in {0, 1}" : ""));
          check_bce<T>(pin, t, weight, red, rng);
        }
        for (int with_pw = 0; with_pw < 3; ++with_pw) {
          std::optional<Buf<T>> pos_weight;
          if (with_pw == 1) pos_weight = rng.uniform_buf<T>({shape.back()}, 0.2, 4.0);
          if (with_pw == 2) pos_weight = rng.uniform_buf<T>(shape, 0.2, 4.0);
          SCOPED_TRACE(std::string(type_name<T>()) + " binary_cross_entropy_with_logits, shape " + shape_str(shape) +
                       wname + (with_pw ? ", pos_weight" : "") + ", reduction " + name_of(red));
          check_bce_logits<T>(x, t_soft, weight, pos_weight, red, rng);
          check_bce_logits<T>(x, t_hard, weight, pos_weight, red, rng);
        }
      }
    }
  }
}

TEST_P(VsReference, BinaryCrossEntropy) {
  if (cases::has_dtype("float32")) bce_cases<float>(41);
  if (cases::has_dtype("float64")) bce_cases<double>(42);
}

XENT_INSTANTIATE_FOR_EVERY_ISA(VsReference);

}  // namespace
}  // namespace xent::test
