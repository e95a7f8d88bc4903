// mean_loss.cc: the smallest program that uses the installed xent library: the mean cross-entropy
// of two rows of logits against class indices, printed with four decimals (1.2753). Built by both
// consumer examples (examples/find_package with CMake, examples/pkg_config with pkg-config) and
// run by the `install_consumers` test. Not a tutorial of the whole API: see README.md.
#include <xent/xent.h>

#include <cstdint>
#include <cstdio>
#include <vector>

int main() {
  std::vector<float> logits = {1, 2, 3, 2, 4, 6};
  std::vector<std::int64_t> target = {0, 2};
  float loss = 0;
  xent::Status s = xent::cross_entropy_forward({logits, {2, 3}}, {target, {2}}, {}, xent::scalar_view(&loss));
  if (!s.ok()) {
    std::fprintf(stderr, "mean_loss: %s\n", s.to_string().c_str());
    return 1;
  }
  std::printf("%.4f\n", loss);
  return 0;
}
