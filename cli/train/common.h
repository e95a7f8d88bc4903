// common.h (cli/train): what `xent train`, `evaluate` and `predict` share: the data flags, loading
// an IDX dataset (files in parallel) or feature files (.npy, CSV), class names, and a terminal
// check. Not a library API.
#pragma once

#include <string>
#include <vector>

#include "xent/io/idx.h"
#include "xent/train/train.h"

namespace CLI {
class App;
}

namespace xent::cli::train {

using namespace ::xent::io;     // LabeledImages, IDX files
using namespace ::xent::train;  // the trainer and the model

struct DataArgs {
  std::string dir;  // --data
  std::string train_images, train_labels, test_images, test_labels;  // explicit files override --data
  // Feature files instead of IDX: --train/--test FILE.npy (labels: --train-labels/--test-labels
  // .npy) or FILE.csv (labels: the --label-column column).
  std::string train_file, test_file, label_column;
  // The decoded-dataset cache for gzip'd IDX files (io/dataset_cache.h): --no-cache, --cache-dir.
  bool no_cache = false;
  std::string cache_dir;
};
// Adds --data, the four --*-images / --*-labels flags, --train/--test, --label-column, --no-cache
// and --cache-dir.
void add_data_options(CLI::App* app, DataArgs* args, bool need_train);

// One labelled set from a feature file: FILE.csv (a header row; labels in the label column, every
// other column a feature), or FILE.npy with labels from `labels` (an int .npy of N). A float32 or
// float64 (N, ...) array gives float features flattened per row ((N, H, W) keeps H x W as the
// shape); a uint8 one gives pixels (scaled x / 255 like IDX images). Bad files throw InputError.
// Without labels_required (predict), a .npy without `labels`, or a CSV without a label column
// (none named "label" and no label_column), gives a set with no labels.
// A CSV label column of class names (io/csv.h) gives labels indexing the sorted distinct names,
// returned in *label_names (left empty for class numbers and other files).
LabeledImages load_feature_set(const std::string& features, const std::string& labels, const std::string& label_column,
                               const char* role, bool labels_required, std::vector<std::string>* label_names);

struct LoadedData {
  LabeledImages train, test;
  IdxDatasetPaths paths;
  // CSV label columns holding class names: each set's distinct names (its labels index them).
  std::vector<std::string> train_names, test_names;
  double seconds = 0;
  // IDX data: where each file came from ("train_images" ... -> "hit", "miss", "off" or "plain",
  // io/dataset_cache.h), the cache directory, and one line saying why the cache could not be
  // written (empty when it could), for the command to print unless quiet.
  std::vector<std::pair<std::string, std::string>> cache;
  std::string cache_dir, cache_note;
};
// Resolves the four paths and loads them on up to `threads` threads. Bad or missing files throw
// InputError (exit 2) naming the file. Without need_train only the test pair is loaded.
LoadedData load_data(const DataArgs& args, int threads, bool need_train);

// Largest label + 1 over the given sets (at least 2).
std::int64_t count_classes(const LabeledImages& a, const LabeledImages& b);
// --class-names "a,b,c" or @FILE when given: at least C names (C = largest label + 1; more names
// make a model with more classes than the data shows, e.g. a class absent from a small set); else
// Fashion-MNIST's names when the path mentions "fashion" and C == 10; else "0", "1", ...
std::vector<std::string> class_names_for(const std::string& flag_value, const std::string& data_path, std::int64_t C);

// CSV labels given as class names. For training: the classes are the names of --class-names when
// given (each name found must be among them), else the distinct names of both sets in byte
// order; both sets are relabelled to index them. Throws InputError when one set has names and the
// other numbers, or a name is not a class. Returns the classes (empty when neither set has names).
std::vector<std::string> classes_from_label_names(LoadedData* d, const std::string& class_names_flag);
// For evaluate and predict: relabels a set whose CSV labels are `found` names to the model's
// classes (InputError naming the file and the first name the model does not have).
void relabel_to_classes(LabeledImages* set, const std::vector<std::string>& found,
                        const std::vector<std::string>& classes, const std::string& file);

bool stderr_is_terminal();

}  // namespace xent::cli::train
