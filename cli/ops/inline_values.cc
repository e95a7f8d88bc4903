// inline_values.cc: the nested-list literal parser of inline_values.h. A recursive descent over
// the text that records each list's length per depth and checks that every list at a depth has
// the same length (rectangular). No allocation beyond the output vectors; no exceptions.
#include "inline_values.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include <fmt/format.h>

namespace xent::cli {
namespace {

class Parser {
 public:
  Parser(std::string_view t, const InlineLimits& limits) : t_(t), limits_(limits) {}

  Status parse(InlineArray* out) {
    out_ = out;
    skip_ws();
    XENT_RETURN_IF_ERROR(value(0));
    skip_ws();
    if (i_ != t_.size()) return expected("the end of the array");
    std::int64_t dims[Shape::kMaxDims];
    for (int d = 0; d < rank_; ++d) dims[d] = len_[d];
    if (!Shape::from_dims(dims, rank_, &out->shape)) return internal_error("inline array rank");
    if (!out->all_integers) out->integers.clear();
    return ok_status();
  }

 private:
  Status value(int depth) {
    if (peek() == '[') return list(depth);
    if (rank_known_ && depth != rank_) {
      return fail(i_, fmt::format("expected '[' (every entry at depth {} must be a list of depth {}), found {}",
                                  depth, rank_, found()));
    }
    if (!rank_known_) {
      rank_known_ = true;
      rank_ = depth;
    }
    return number();
  }

  Status list(int depth) {
    if (depth >= Shape::kMaxDims) {
      return fail(i_, fmt::format("expected at most {} nested lists, found a deeper one", Shape::kMaxDims));
    }
    if (rank_known_ && depth >= rank_) {
      return fail(i_, fmt::format("expected a number (entries at depth {} are numbers), found '['", depth));
    }
    std::size_t open = i_;
    ++i_;  // '['
    skip_ws();
    std::int64_t count = 0;
    if (peek() == ']') {
      ++i_;
      // An empty list fixes the rank here: [] is shape (0), [[], []] is shape (2, 0).
      if (!rank_known_) {
        rank_known_ = true;
        rank_ = depth + 1;
      } else if (rank_ != depth + 1) {
        return fail(open, fmt::format("expected a list of depth {} like the others, found an empty list '[]'",
                                      rank_ - depth));
      }
      return record_length(depth, 0, open);
    }
    for (;;) {
      XENT_RETURN_IF_ERROR(value(depth + 1));
      ++count;
      skip_ws();
      if (peek() == ',') {
        ++i_;
        skip_ws();
        if (peek() == ']') {  // trailing comma
          ++i_;
          break;
        }
        continue;
      }
      if (peek() == ']') {
        ++i_;
        break;
      }
      return expected("',' or ']'");
    }
    return record_length(depth, count, open);
  }

  Status record_length(int depth, std::int64_t count, std::size_t open) {
    if (len_set_[depth] && len_[depth] != count) {
      return fail(open, fmt::format("expected a list of {} entries like the first at this depth, found {} "
                                    "(lists must be rectangular)",
                                    len_[depth], count));
    }
    len_set_[depth] = true;
    len_[depth] = count;
    return ok_status();
  }

  Status number() {
    if (out_->values.size() >= limits_.max_elements) {
      return fail(i_, fmt::format("expected at most {} numbers, found more", limits_.max_elements));
    }
    std::size_t start = i_;
    bool neg = false;
    if (peek() == '-' || peek() == '+') {
      neg = peek() == '-';
      ++i_;
    }
    if (eat_word("inf") || eat_word("Infinity")) {
      push(neg ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity(), false, 0);
      return ok_status();
    }
    if (eat_word("nan") || eat_word("NaN")) {
      push(std::numeric_limits<double>::quiet_NaN(), false, 0);
      return ok_status();
    }
    std::size_t digits_start = i_;
    while (is_digit(peek())) ++i_;
    bool integral = true;
    std::size_t int_digits = i_ - digits_start;
    std::size_t frac_digits = 0;
    if (peek() == '.') {
      integral = false;
      ++i_;
      std::size_t f = i_;
      while (is_digit(peek())) ++i_;
      frac_digits = i_ - f;
    }
    if (int_digits + frac_digits == 0) {
      i_ = start;
      return expected("a number or '['");
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++i_;
      if (peek() == '+' || peek() == '-') ++i_;
      std::size_t e = i_;
      while (is_digit(peek())) ++i_;
      if (i_ == e) return expected("digits in the exponent");
    }
    if (is_ident(peek())) return expected("',' or ']' after the number");
    // from_chars rejects a leading '+'; parse from after it.
    std::size_t num_start = (t_[start] == '+') ? start + 1 : start;
    const char* b = t_.data() + num_start;
    const char* e = t_.data() + i_;
    double v = 0;
    auto r = std::from_chars(b, e, v);
    if (r.ec == std::errc::result_out_of_range) {
      // Too large or too small for a double: +-inf or 0 (or a subnormal), as NumPy reads it.
      v = std::strtod(std::string(b, e).c_str(), nullptr);
    } else if (r.ec != std::errc() || r.ptr != e) {
      i_ = start;
      return expected("a number");
    }
    std::int64_t iv = 0;
    if (integral) {
      auto ri = std::from_chars(b, e, iv);
      if (ri.ec != std::errc() || ri.ptr != e) {
        return fail(start, fmt::format("expected an integer that fits in 64 bits, found '{}'",
                                       std::string(t_.substr(start, i_ - start))));
      }
    }
    push(v, integral, iv);
    return ok_status();
  }

  void push(double v, bool integral, std::int64_t iv) {
    out_->values.push_back(v);
    if (!integral) out_->all_integers = false;
    if (out_->all_integers) out_->integers.push_back(iv);
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  static bool is_ident(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.'; }
  char peek() const { return i_ < t_.size() ? t_[i_] : '\0'; }
  bool eat_word(std::string_view w) {
    if (t_.substr(i_, w.size()) != w) return false;
    if (i_ + w.size() < t_.size() && is_ident(t_[i_ + w.size()])) return false;
    i_ += w.size();
    return true;
  }
  void skip_ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r')) ++i_;
  }
  std::string found() const {
    if (i_ >= t_.size()) return "the end of the text";
    unsigned char c = static_cast<unsigned char>(t_[i_]);
    if (c < 0x20 || c >= 0x7f || c == '\'') return fmt::format("byte 0x{:02x}", c);
    return fmt::format("'{}'", static_cast<char>(c));
  }
  Status fail(std::size_t pos, const std::string& what) const {
    return invalid_argument(fmt::format("at character {}: {}", pos, what));
  }
  Status expected(const std::string& what) const { return fail(i_, fmt::format("expected {}, found {}", what, found())); }

  std::string_view t_;
  InlineLimits limits_;
  InlineArray* out_ = nullptr;
  std::size_t i_ = 0;
  bool rank_known_ = false;
  int rank_ = 0;
  std::int64_t len_[Shape::kMaxDims] = {};
  bool len_set_[Shape::kMaxDims] = {};
};

}  // namespace

Result<InlineArray> parse_inline_array(std::string_view text, const InlineLimits& limits) {
  if (text.size() > limits.max_chars) {
    return invalid_argument(fmt::format("expected at most {} characters, found {}", limits.max_chars, text.size()));
  }
  InlineArray out;
  Status s = Parser(text, limits).parse(&out);
  if (!s.ok()) return s;
  return out;
}

}  // namespace xent::cli
