// print_array.cc (cli/shared): NumPy-style text for an op's result (see print_array.h).
#include "shared/print_array.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <vector>

#include <fmt/format.h>

namespace xent::cli {
namespace {

constexpr std::int64_t kThreshold = 1000;  // numpy.get_printoptions()["threshold"]
constexpr std::int64_t kEdgeItems = 3;     // ... ["edgeitems"]
constexpr std::size_t kLineWidth = 75;     // ... ["linewidth"]

// The shortest decimal (as a double) that rounds back to the 16-bit value `v` holds.
template <class H, class Round>
double shortest_16(H v, Round round) {
  const double x = to_float(v);
  if (!std::isfinite(x)) return x;
  for (int digits = 1; digits < 17; ++digits) {
    const double d = std::strtod(fmt::format("{:.{}g}", x, digits).c_str(), nullptr);
    if (round(d).bits == v.bits) return d;
  }
  return x;
}

double value_at(const ConstTensorView& a, std::int64_t i) {
  switch (a.dtype) {
    case DType::kF32: return a.as<float>()[i];
    case DType::kF64: return a.as<double>()[i];
    case DType::kI32: return a.as<std::int32_t>()[i];
    case DType::kI64: return static_cast<double>(a.as<std::int64_t>()[i]);
    case DType::kBF16: return shortest_16(a.as<bfloat16>()[i], [](double d) { return to_bfloat16(d); });
    case DType::kF16: return shortest_16(a.as<float16>()[i], [](double d) { return to_float16(d); });
  }
  return 0.0;
}

std::string dtype_word(DType t) {
  switch (t) {
    case DType::kF32: return "float32";
    case DType::kF64: return "float64";
    case DType::kI32: return "int32";
    case DType::kI64: return "int64";
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
  }
  return "?";
}

// Indices printed along a dimension of size n: all, or the first and last kEdgeItems (-1 = "...").
std::vector<std::int64_t> shown(std::int64_t n, bool summarise) {
  std::vector<std::int64_t> v;
  if (!summarise || n <= 2 * kEdgeItems) {
    for (std::int64_t i = 0; i < n; ++i) v.push_back(i);
  } else {
    for (std::int64_t i = 0; i < kEdgeItems; ++i) v.push_back(i);
    v.push_back(-1);
    for (std::int64_t i = n - kEdgeItems; i < n; ++i) v.push_back(i);
  }
  return v;
}

// How every element is written: one format for the whole array, as NumPy chooses it.
struct Style {
  bool integer = false, scientific = false;
  int digits = 0;  // fractional digits (fixed) or mantissa digits (scientific)
  std::size_t width = 0;
};

int needed_digits(double v, bool scientific) {
  // The fewest digits (<= 8) that print v as it prints with 8: trailing zeros dropped.
  std::string s = scientific ? fmt::format("{:.8e}", v) : fmt::format("{:.8f}", v);
  std::size_t dot = s.find('.');
  std::size_t end = scientific ? s.find('e') : s.size();
  std::size_t last = end;
  while (last > dot + 1 && s[last - 1] == '0') --last;
  return static_cast<int>(last - dot - 1);
}

std::string element(double v, const Style& st) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (st.integer) return fmt::format("{}", static_cast<long long>(v));
  if (st.scientific) {
    std::string s = fmt::format("{:.{}e}", v, std::max(st.digits, 1));
    return s;
  }
  std::string s = fmt::format("{:.{}f}", v, st.digits);
  if (st.digits == 0) s += ".";
  return s;
}

void walk(const ConstTensorView& a, int dim, std::int64_t offset, const std::vector<std::int64_t>& strides, bool summarise,
          const std::function<void(std::int64_t)>& leaf) {
  if (dim == a.shape.rank()) {
    leaf(offset);
    return;
  }
  for (std::int64_t i : shown(a.shape[dim], summarise)) {
    if (i >= 0) walk(a, dim + 1, offset + i * strides[dim], strides, summarise, leaf);
  }
}

void render(const ConstTensorView& a, int dim, std::int64_t offset, const std::vector<std::int64_t>& strides,
            bool summarise, const Style& st, std::string* out) {
  const int rank = a.shape.rank();
  const std::string indent(static_cast<std::size_t>(dim + 1), ' ');
  *out += "[";
  if (dim == rank - 1) {
    std::size_t line = static_cast<std::size_t>(dim + 1);
    bool first = true;
    for (std::int64_t i : shown(a.shape[dim], summarise)) {
      std::string e = i < 0 ? "..." : element(value_at(a, offset + i * strides[dim]), st);
      if (i >= 0 && e.size() < st.width) e.insert(0, st.width - e.size(), ' ');
      if (!first) {
        if (line + 1 + e.size() + 1 > kLineWidth) {
          *out += "\n" + indent;
          line = indent.size();
        } else {
          *out += " ";
          ++line;
        }
      }
      *out += e;
      line += e.size();
      first = false;
    }
  } else {
    bool first = true;
    for (std::int64_t i : shown(a.shape[dim], summarise)) {
      if (!first) *out += std::string(static_cast<std::size_t>(rank - dim - 1), '\n') + indent;
      if (i < 0) {
        *out += "...";
      } else {
        render(a, dim + 1, offset + i * strides[dim], strides, summarise, st, out);
      }
      first = false;
    }
  }
  *out += "]";
}

}  // namespace

std::string format_array(const ConstTensorView& a, bool show_dtype) {
  const bool integer = a.dtype == DType::kI32 || a.dtype == DType::kI64;
  show_dtype = show_dtype || a.dtype == DType::kBF16 || a.dtype == DType::kF16;
  const std::string dtype_line = show_dtype ? fmt::format("dtype {}\n", dtype_word(a.dtype)) : "";
  if (a.shape.rank() == 0) {
    const double v = value_at(a, 0);
    if (integer) return fmt::format("{}\n", static_cast<long long>(v)) + dtype_line;
    if (a.dtype == DType::kF32) return fmt::format("{}\n", static_cast<float>(v)) + dtype_line;
    return fmt::format("{}\n", v) + dtype_line;
  }
  const int rank = a.shape.rank();
  std::vector<std::int64_t> strides(static_cast<std::size_t>(rank), 1);
  for (int d = rank - 2; d >= 0; --d) strides[d] = strides[d + 1] * a.shape[d + 1];
  const bool summarise = a.numel() > kThreshold;

  Style st;
  st.integer = integer;
  std::vector<double> vals;
  if (a.numel() > 0) walk(a, 0, 0, strides, summarise, [&](std::int64_t i) { vals.push_back(value_at(a, i)); });
  if (!integer) {
    double maxv = 0.0, minv = INFINITY;
    for (double v : vals) {
      if (!std::isfinite(v)) continue;
      maxv = std::max(maxv, std::fabs(v));
      if (v != 0.0) minv = std::min(minv, std::fabs(v));
    }
    st.scientific = maxv >= 1e8 || (std::isfinite(minv) && (minv < 1e-4 || maxv / minv > 1e3));
    for (double v : vals) {
      if (std::isfinite(v)) st.digits = std::max(st.digits, needed_digits(v, st.scientific));
    }
  }
  for (double v : vals) st.width = std::max(st.width, element(v, st).size());

  std::string out;
  if (a.numel() == 0) {
    out = "[]";
  } else {
    render(a, 0, 0, strides, summarise, st, &out);
  }
  out += "\n";
  if (summarise) {
    std::string dims;
    for (int d = 0; d < rank; ++d) dims += fmt::format("{}{}", d ? ", " : "", a.shape[d]);
    out += fmt::format("shape ({}{}), dtype {}\n", dims, rank == 1 ? "," : "", dtype_word(a.dtype));
  } else {
    out += dtype_line;
  }
  return out;
}

}  // namespace xent::cli
