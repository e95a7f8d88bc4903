// test_threads.cc: the same inputs give the same bits for 1, 2 and 7 threads, for every op and every
// ISA, on shapes large enough to be split: the "threads" lists of the shared case table
// (tests/cases/cases.json, which test_vs_torch.py's thread runs read too), and a 200000-row
// reduction. Determinism is xent's promise (runtime.h); closeness to the oracle is tested elsewhere.
#include <functional>

#include "cases/cases.h"
#include "test_util.h"

namespace xent::test {
namespace {

class Threads : public IsaTest {
 protected:
  void TearDown() override {
    xent::set_num_threads(0);
    IsaTest::TearDown();
  }
};

// Runs `op` (which fills `outs`) at each thread count and expects identical bits.
template <class T>
void expect_same_bits_for_thread_counts(const std::string& what, const std::function<Status(std::vector<Buf<T>*>&)>& op,
                                        std::vector<Buf<T>*> outs) {
  SCOPED_TRACE(what);
  std::vector<std::vector<T>> first;
  for (int threads : {1, 2, 7}) {
    xent::set_num_threads(threads);
    for (Buf<T>* o : outs) std::fill(o->v.begin(), o->v.end(), T(-3));
    const Status s = op(outs);
    ASSERT_TRUE(s.ok()) << s.to_string();
    if (first.empty()) {
      for (Buf<T>* o : outs) first.push_back(o->v);
      continue;
    }
    for (std::size_t k = 0; k < outs.size(); ++k) {
      EXPECT_TRUE(same_bits(first[k], outs[k]->v)) << "output " << k << " differs between 1 and " << threads << " threads";
    }
  }
}

template <class T>
void all_ops() {
  Rng rng(301);
  const std::string ty = type_name<T>();
  const cases::Table& table = cases::table();

  for (const cases::SoftmaxCase& c : table.threads_softmax) {
    const Buf<T> x = rng.uniform_buf<T>(c.shape, -6, 6);
    const Buf<T> dy = rng.uniform_buf<T>(c.shape, -1, 1);
    Buf<T> y(c.shape), dx(c.shape);
    for (std::int64_t dim : c.dims) {
      const std::int64_t d = dim < 0 ? dim + static_cast<std::int64_t>(c.shape.size()) : dim;
      Buf<T> lse(ref::shape_without(c.shape, d));
      const std::string at = " " + shape_str(c.shape) + " dim " + std::to_string(dim);
      expect_same_bits_for_thread_counts<T>(ty + " softmax" + at, [&](auto& o) { return softmax_forward(x.cview(), dim, o[0]->view()); }, {&y});
      expect_same_bits_for_thread_counts<T>(ty + " softmax_backward" + at,
                                            [&](auto& o) { return softmax_backward(x.cview(), dy.cview(), dim, o[0]->view()); }, {&dx});
      expect_same_bits_for_thread_counts<T>(ty + " log_softmax" + at, [&](auto& o) { return log_softmax_forward(x.cview(), dim, o[0]->view()); }, {&y});
      expect_same_bits_for_thread_counts<T>(ty + " log_softmax_backward" + at,
                                            [&](auto& o) { return log_softmax_backward(x.cview(), dy.cview(), dim, o[0]->view()); }, {&dx});
      expect_same_bits_for_thread_counts<T>(ty + " logsumexp" + at, [&](auto& o) { return logsumexp_forward(x.cview(), dim, o[0]->view()); }, {&lse});
    }
  }

  for (const cases::Shape& shape : table.threads_class_losses) {
    const std::int64_t C = cases::classes(shape);
    const ref::Shape tshape = ref::shape_without(shape, 1);
    const Buf<T> x = rng.uniform_buf<T>(shape, -6, 6);
    Buf<T> dx(shape), loss(ref::Shape{}), loss_rows(tshape);
    Buf<std::int64_t> t(tshape);
    for (auto& v : t.v) v = rng.integer(0, C - 1);
    t.v[5] = -100;
    const Buf<T> w = rng.uniform_buf<T>({C}, 0.5, 2);
    const std::string at = ", shape " + shape_str(shape);
    // The smoothing and plain paths, each reduction once; backward with a per-row dloss.
    const std::pair<double, Reduction> ce_cases[] = {{0.0, Reduction::kMean}, {0.1, Reduction::kNone}, {0.1, Reduction::kSum}};
    for (const auto& [eps, red] : ce_cases) {
      CrossEntropyOptions o;
      o.weight = w.cview();
      o.label_smoothing = eps;
      o.reduction = red;
      Buf<T>& l = red == Reduction::kNone ? loss_rows : loss;
      const std::string name = ty + " cross_entropy_fused, reduction " + reduction_name(red) + ", eps " + std::to_string(eps) + at;
      expect_same_bits_for_thread_counts<T>(
          name, [&](auto& out) { return cross_entropy_fused(x.cview(), t.cview(), o, out[0]->view(), out[1]->view()); }, {&l, &dx});
      if (red == Reduction::kNone) {
        const Buf<T> dl = rng.uniform_buf<T>(l.shape, -1, 1);
        expect_same_bits_for_thread_counts<T>(
            ty + " cross_entropy_backward, reduction none" + at,
            [&](auto& out) { return cross_entropy_backward(x.cview(), t.cview(), o, dl.cview(), out[0]->view()); }, {&dx});
      }
    }
    const Buf<T> probs = rng.prob_buf<T>(shape);
    expect_same_bits_for_thread_counts<T>(
        ty + " cross_entropy_fused, probability targets" + at,
        [&](auto& out) { return cross_entropy_fused(x.cview(), probs.cview(), {}, out[0]->view(), out[1]->view()); }, {&loss, &dx});
    expect_same_bits_for_thread_counts<T>(ty + " nll_loss" + at,
                                          [&](auto& out) { return nll_loss_forward(x.cview(), t.cview(), {}, out[0]->view()); }, {&loss});
  }

  for (const cases::Shape& shape : table.threads_elementwise_losses) {
    const Buf<T> p = rng.uniform_buf<T>(shape, 0, 1), target = rng.uniform_buf<T>(shape, 0, 1);
    const Buf<T> x = rng.uniform_buf<T>(shape, -6, 6);
    Buf<T> dx(shape), loss(ref::Shape{});
    const std::string at = ", shape " + shape_str(shape);
    expect_same_bits_for_thread_counts<T>(ty + " binary_cross_entropy" + at,
                                          [&](auto& out) { return binary_cross_entropy_forward(p.cview(), target.cview(), {}, out[0]->view()); }, {&loss});
    expect_same_bits_for_thread_counts<T>(
        ty + " binary_cross_entropy_backward" + at,
        [&](auto& out) { return binary_cross_entropy_backward(p.cview(), target.cview(), {}, Buf<T>({}, T(1)).cview(), out[0]->view()); },
        {&dx});
    expect_same_bits_for_thread_counts<T>(
        ty + " binary_cross_entropy_with_logits" + at,
        [&](auto& out) { return binary_cross_entropy_with_logits_forward(x.cview(), target.cview(), {}, out[0]->view()); }, {&loss});
  }
}

TEST_P(Threads, EveryOpIsBitwiseDeterministic) {
  if (cases::has_dtype("float32")) all_ops<float>();
  if (cases::has_dtype("float64")) all_ops<double>();
}

template <class T>
void long_reduction() {
  Rng rng(302);
  const std::int64_t N = 200000, C = 3;
  const Buf<T> x = rng.uniform_buf<T>({N, C}, -5, 5);
  Buf<std::int32_t> t({N});
  for (auto& v : t.v) v = static_cast<std::int32_t>(rng.integer(0, C - 1));
  Buf<T> loss(ref::Shape{}), dx({N, C});
  for (double eps : {0.0, 0.2}) {
    CrossEntropyOptions o;
    o.label_smoothing = eps;
    expect_same_bits_for_thread_counts<T>(
        std::string(type_name<T>()) + " mean over 200000 rows, eps " + std::to_string(eps),
        [&](auto& out) { return cross_entropy_fused(x.cview(), t.cview(), o, out[0]->view(), out[1]->view()); }, {&loss, &dx});
  }
  const Buf<T> xb = rng.uniform_buf<T>({N}, -5, 5), tb = rng.uniform_buf<T>({N}, 0, 1);
  expect_same_bits_for_thread_counts<T>(
      std::string(type_name<T>()) + " BCE-with-logits sum over 200000 elements",
      [&](auto& out) {
        BceOptions b;
        b.reduction = Reduction::kSum;
        return binary_cross_entropy_with_logits_forward(xb.cview(), tb.cview(), b, out[0]->view());
      },
      {&loss});
}

TEST_P(Threads, LongReductionIsBitwiseDeterministic) {
  long_reduction<float>();
  long_reduction<double>();
}

XENT_INSTANTIATE_FOR_EVERY_ISA(Threads);

}  // namespace
}  // namespace xent::test
