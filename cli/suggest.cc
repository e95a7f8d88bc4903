// suggest.cc: edit distance and the closest name, for "did you mean ...?" (see suggest.h).
// Hand-written: a dozen lines, and no Debian package offers just this.
#include "suggest.h"

#include <algorithm>

namespace xent::cli {

int edit_distance(const std::string& a, const std::string& b) {
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
  for (std::size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (std::size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (std::size_t i = 1; i <= n; ++i) {
    for (std::size_t j = 1; j <= m; ++j) {
      const int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

std::string closest(const std::string& typed, const std::vector<std::string>& candidates) {
  auto bare = [](std::string s) {
    s.erase(0, s.find_first_not_of('-'));
    std::replace(s.begin(), s.end(), '_', '-');
    return s;
  };
  const std::string t = bare(typed);
  std::string best;
  int best_d = 3;
  for (const auto& c : candidates) {
    const int d = edit_distance(t, bare(c));
    if (d < best_d && 2 * d < static_cast<int>(t.size())) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

}  // namespace xent::cli
