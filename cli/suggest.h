// suggest.h: "did you mean ...?" for the `xent` command line: the Damerau-Levenshtein distance
// (optimal string alignment: insertions, deletions, substitutions and swaps of neighbours) and the
// closest of a list of names. Not a fuzzy matcher for anything else.
#pragma once

#include <string>
#include <vector>

namespace xent::cli {

// Edits (insert, delete, substitute, swap two neighbours) that turn a into b.
int edit_distance(const std::string& a, const std::string& b);

// The candidate closest to `typed` if it is close enough to be a typo (at most 2 edits, and fewer
// than half the typed length; leading dashes and '_' vs '-' cost nothing extra), else "".
std::string closest(const std::string& typed, const std::vector<std::string>& candidates);

}  // namespace xent::cli
