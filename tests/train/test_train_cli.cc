// test_train_cli.cc: `xent train`, `evaluate` and `predict` as a user runs them: outputs written,
// exit codes (0 ok, 2 bad input or usage, 130 interrupted), identical models for the same seed
// and thread counts, and Ctrl-C then --resume ending with the same bits as an uninterrupted run.
#include <gtest/gtest.h>

#include <map>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "train_test_util.h"
#include "xent/io/safetensors.h"
#include "xent/train/model.h"

extern char** environ;

namespace xent {
namespace {

using namespace ::xent::io;
using namespace ::xent::train;

struct Out {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::string& p) {
  auto b = test::read_bytes(p);
  return std::string(b.begin(), b.end());
}

Out xent_run(const test::TempDir& dir, const std::string& args) {
  const std::string cmd = std::string("'") + XENT_CLI_PATH + "' " + args + " >'" + (dir / "stdout") + "' 2>'" +
                          (dir / "stderr") + "'";
  const int rc = std::system(cmd.c_str());
  Out o;
  o.code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  o.out = slurp(dir / "stdout");
  o.err = slurp(dir / "stderr");
  return o;
}

class TrainCli : public ::testing::Test {
 protected:
  void SetUp() override {
    data = dir / "data";
    std::filesystem::create_directories(data);
    test::write_idx_pair(data, "train", test::make_synthetic(400, 8, 8, 4, 31), 8, 8, true);
    test::write_idx_pair(data, "t10k", test::make_synthetic(100, 8, 8, 4, 32), 8, 8, false);
  }
  std::string train_args(const std::string& extra) {
    return "train --data '" + data + "' --batch-size 32 --lr 0.2 --no-progress " + extra;
  }
  test::TempDir dir;
  std::string data;
};

TEST_F(TrainCli, TrainWritesEverythingThenEvaluateAndPredict) {
  const std::string out = dir / "out";
  Out t = xent_run(dir, train_args("--epochs 3 --out '" + out + "'"));
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("test acc"), std::string::npos) << t.out;
  for (const char* f : {"model.safetensors", "metrics.json", "metrics.csv", "curves.png", "confusion.png", "predictions.png",
                        "weights.png", "report.html"})
    EXPECT_TRUE(std::filesystem::is_regular_file(std::filesystem::path(out) / f)) << f;
  EXPECT_EQ(slurp(out + "/curves.png").substr(1, 3), "PNG");
  auto metrics = nlohmann::json::parse(slurp(out + "/metrics.json"));
  ASSERT_EQ(metrics["epochs"].size(), 3u);
  const double acc = metrics["final"]["test_accuracy"].get<double>();
  EXPECT_GT(acc, 0.8);
  EXPECT_NE(slurp(out + "/report.html").find("confusion.png"), std::string::npos);
  const std::string csv = slurp(out + "/metrics.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4) << csv;

  Out e = xent_run(dir, "evaluate --model '" + out + "/model.safetensors' --data '" + data + "' --json");
  ASSERT_EQ(e.code, 0) << e.err;
  auto ej = nlohmann::json::parse(e.out);
  EXPECT_DOUBLE_EQ(ej["accuracy"].get<double>(), acc);
  EXPECT_EQ(ej["confusion"].size(), 4u);
  Out et = xent_run(dir, "evaluate --model '" + out + "/model.safetensors' --data '" + data + "'");
  ASSERT_EQ(et.code, 0) << et.err;
  EXPECT_NE(et.out.find("confusion matrix"), std::string::npos) << et.out;

  Out p = xent_run(dir, "predict --model '" + out + "/model.safetensors' --images '" + data +
                            "/t10k-images-idx3-ubyte' --index 5 --top 4 --json");
  ASSERT_EQ(p.code, 0) << p.err;
  auto pj = nlohmann::json::parse(p.out);
  ASSERT_EQ(pj["top"].size(), 4u);
  double sum = 0, prev = 2;
  for (const auto& t4 : pj["top"]) {
    const double pr = t4["probability"].get<double>();
    EXPECT_LE(pr, prev);
    prev = pr, sum += pr;
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
  Out pt = xent_run(dir, "predict --model '" + out + "/model.safetensors' --images '" + data + "/t10k-images-idx3-ubyte'");
  ASSERT_EQ(pt.code, 0) << pt.err;
  EXPECT_NE(pt.out.find("%"), std::string::npos);
}

TEST_F(TrainCli, BadInputExitsWith2AndNamesTheFile) {
  Out none = xent_run(dir, "train --data '" + (dir / "nowhere") + "' --out '" + (dir / "o") + "'");
  EXPECT_EQ(none.code, 2) << none.err;
  EXPECT_NE(none.err.find("nowhere"), std::string::npos) << none.err;

  auto img = test::read_bytes(data + "/t10k-images-idx3-ubyte");
  img.resize(img.size() - 10);
  test::write_bytes(data + "/t10k-images-idx3-ubyte", img);
  Out trunc = xent_run(dir, train_args("--epochs 1 --out '" + (dir / "o") + "'"));
  EXPECT_EQ(trunc.code, 2);
  EXPECT_NE(trunc.err.find("t10k-images-idx3-ubyte"), std::string::npos) << trunc.err;
  EXPECT_NE(trunc.err.find("truncated"), std::string::npos) << trunc.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "o/model.safetensors"));

  test::write_bytes(dir / "junk.safetensors", {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Out junk = xent_run(dir, "evaluate --model '" + (dir / "junk.safetensors") + "' --data '" + data + "'");
  EXPECT_EQ(junk.code, 2);
  EXPECT_NE(junk.err.find("junk.safetensors"), std::string::npos) << junk.err;

  Out usage = xent_run(dir, train_args("--epochs 0"));
  EXPECT_EQ(usage.code, 2) << usage.err;
}

TEST_F(TrainCli, SameSeedSameModelForAnyThreadCount) {
  ASSERT_EQ(xent_run(dir, train_args("--epochs 2 --no-report --threads 1 --out '" + (dir / "a") + "'")).code, 0);
  ASSERT_EQ(xent_run(dir, train_args("--epochs 2 --no-report --threads 1 --out '" + (dir / "b") + "'")).code, 0);
  ASSERT_EQ(xent_run(dir, train_args("--epochs 2 --no-report --threads 2 --out '" + (dir / "c") + "'")).code, 0);
  ASSERT_EQ(xent_run(dir, train_args("--epochs 2 --no-report --seed 1 --out '" + (dir / "d") + "'")).code, 0);
  const auto a = test::read_bytes(dir / "a/model.safetensors");
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(test::read_bytes(dir / "b/model.safetensors"), a);
  EXPECT_EQ(test::read_bytes(dir / "c/model.safetensors"), a);
  EXPECT_NE(test::read_bytes(dir / "d/model.safetensors"), a);
}

TEST_F(TrainCli, ResumeAfterFewerEpochsEqualsAStraightRun) {
  const std::string opts = "--momentum 0.9 --weight-decay 0.001 --no-report ";
  ASSERT_EQ(xent_run(dir, train_args(opts + "--epochs 4 --out '" + (dir / "full") + "'")).code, 0);
  Out p = xent_run(dir, train_args(opts + "--epochs 2 --checkpoint '" + (dir / "ck") + "' --out '" + (dir / "part") + "'"));
  ASSERT_EQ(p.code, 0) << p.err;
  Out r = xent_run(dir, train_args(opts + "--epochs 4 --resume '" + (dir / "ck") + "' --out '" + (dir / "res") + "'"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("resumed"), std::string::npos) << r.out;
  EXPECT_EQ(test::read_bytes(dir / "res/model.safetensors"), test::read_bytes(dir / "full/model.safetensors"));
  // Other options refuse to resume.
  Out bad = xent_run(dir, train_args("--momentum 0.5 --no-report --epochs 4 --resume '" + (dir / "ck") + "' --out '" + (dir / "x") + "'"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("--momentum 0.5 conflicts with the checkpoint"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("written with --momentum 0.9"), std::string::npos) << bad.err;
  // The stored options are used when none are given: --epochs and outputs only.
  Out r2 = xent_run(dir, "train --data '" + data + "' --no-progress --epochs 4 --resume '" + (dir / "ck") + "' --out '" +
                             (dir / "res2") + "' --no-report");
  ASSERT_EQ(r2.code, 0) << r2.err;
  EXPECT_EQ(test::read_bytes(dir / "res2/model.safetensors"), test::read_bytes(dir / "full/model.safetensors"));
  // Repeating a stored option with its value is fine.
  Out r3 = xent_run(dir, train_args("--momentum 0.9 --epochs 4 --no-report --resume '" + (dir / "ck") + "' --out '" + (dir / "res3") + "'"));
  EXPECT_EQ(r3.code, 0) << r3.err;
}

TEST_F(TrainCli, CtrlCThenResumeEqualsAStraightRun) {
  // Many short epochs, so that SIGINT lands in the middle of the run.
  const std::string ck = dir / "ck.safetensors";
  const std::string args = std::string(XENT_CLI_PATH) + " " +
                           train_args("--epochs 100000 --no-report --quiet --checkpoint '" + ck + "' --out '" + (dir / "int") + "'");
  pid_t pid = 0;
  const std::string cmd = "exec " + args + " 2>'" + (dir / "int.err") + "'";
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  ASSERT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ), 0);
  for (int i = 0; i < 600 && !std::filesystem::exists(ck); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(std::filesystem::exists(ck)) << "no checkpoint appeared";
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  const std::string err = slurp(dir / "int.err");
  EXPECT_NE(err.find("interrupted after epoch"), std::string::npos) << err;
  auto bytes = test::read_bytes(ck);
  auto st = parse_safetensors(bytes.data(), bytes.size(), ck);
  ASSERT_TRUE(st.ok()) << st.status().message();
  const int done = std::stoi(st->metadata.at("checkpoint_epochs_done"));
  ASSERT_GE(done, 1);
  const std::string total = std::to_string(done + 2);
  Out r = xent_run(dir, train_args("--epochs " + total + " --no-report --resume '" + ck + "' --out '" + (dir / "res") + "'"));
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(xent_run(dir, train_args("--epochs " + total + " --no-report --out '" + (dir / "full") + "'")).code, 0);
  EXPECT_EQ(test::read_bytes(dir / "res/model.safetensors"), test::read_bytes(dir / "full/model.safetensors"))
      << "resumed after " << done << " epochs";
}

}  // namespace
}  // namespace xent

namespace xent {
namespace {

TEST_F(TrainCli, ValidationSplitAndLossesInMetricsAndReport) {
  const std::string out = dir / "v";
  Out t = xent_run(dir, train_args("--epochs 2 --val-split 0.25 --out '" + out + "'"));
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("300 train + 100 validation + 100 test"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("val loss"), std::string::npos) << t.out;
  auto j = nlohmann::json::parse(slurp(out + "/metrics.json"));
  ASSERT_EQ(j["epochs"].size(), 2u);
  for (const char* k : {"train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy"})
    EXPECT_TRUE(j["final"][k].is_number()) << k;
  EXPECT_EQ(j["val_images"], 100);
  const std::string csv = slurp(out + "/metrics.csv");
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "epoch,train_loss,train_accuracy,val_loss,val_accuracy,test_loss,test_accuracy,objective,seconds");
  const std::string html = slurp(out + "/report.html");
  EXPECT_NE(html.find("id=\"hyperparameters\""), std::string::npos);
  EXPECT_NE(html.find("<td>val_split</td><td>0.25</td>"), std::string::npos);
  EXPECT_EQ(html.find("http-equiv=\"refresh\""), std::string::npos) << "the final page must not reload itself";
  EXPECT_NE(html.find("<h1>Softmax regression on data</h1>"), std::string::npos) << "title: the data directory's name";
  EXPECT_NE(html.find("correct"), std::string::npos);
  // Without a validation split the test loss is still there, and no val columns.
  Out t2 = xent_run(dir, train_args("--epochs 1 --no-report --out '" + (dir / "nv") + "'"));
  ASSERT_EQ(t2.code, 0) << t2.err;
  auto j2 = nlohmann::json::parse(slurp(dir / "nv/metrics.json"));
  EXPECT_TRUE(j2["final"]["test_loss"].is_number());
  EXPECT_TRUE(j2["final"]["val_loss"].is_null());
  EXPECT_EQ(t2.out.find("val loss"), std::string::npos);
  // A split that leaves a class without training images is refused.
  Out bad = xent_run(dir, train_args("--epochs 1 --val-split 1.5 --out '" + (dir / "b") + "'"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("--val-split"), std::string::npos) << bad.err;
}

TEST_F(TrainCli, LbfgsRunsAndRecordsTheObjective) {
  const std::string out = dir / "l";
  Out t = xent_run(dir, train_args("--optimizer lbfgs --C 0.5 --max-iter 30 --log-every 5 --dtype float64 --out '" + out + "'"));
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("L-BFGS: objective"), std::string::npos) << t.out;
  auto j = nlohmann::json::parse(slurp(out + "/metrics.json"));
  ASSERT_GE(j["epochs"].size(), 2u);
  double prev = 1e300;
  for (const auto& e : j["epochs"]) {
    EXPECT_LE(e["objective"].get<double>(), prev);  // L-BFGS decreases f every iteration
    prev = e["objective"].get<double>();
  }
  EXPECT_EQ(j["recipe"]["optimizer"], "lbfgs");
  EXPECT_GT(j["final"]["test_accuracy"].get<double>(), 0.9);
  Out bad = xent_run(dir, train_args("--optimizer lbfgs --checkpoint '" + (dir / "ck") + "' --out '" + (dir / "x") + "'"));
  EXPECT_EQ(bad.code, 2);
  // The change of variables: every kind reaches the same objective here; a bad or contradictory
  // choice is a usage error that names it.
  std::map<std::string, double> objective;
  for (std::string kind : {"curvature", "inputs", "none"}) {
    const std::string o = dir / ("p" + kind);
    Out r = xent_run(dir, train_args("--optimizer lbfgs --C 0.5 --max-iter 300 --dtype float64 --quiet --precondition " +
                                      kind + " --out '" + o + "'"));
    ASSERT_EQ(r.code, 0) << kind << ": " << r.err;
    const auto mj = nlohmann::json::parse(slurp(o + "/metrics.json"));
    objective[kind] = mj["epochs"].back()["objective"].get<double>();
    EXPECT_EQ(mj["recipe"]["precondition"], kind);
  }
  EXPECT_NEAR(objective["curvature"], objective["none"], 1e-9 * objective["none"]);
  EXPECT_NEAR(objective["inputs"], objective["none"], 1e-9 * objective["none"]);
  Out unknown = xent_run(dir, train_args("--optimizer lbfgs --precondition newton --out '" + (dir / "y") + "'"));
  EXPECT_EQ(unknown.code, 2);
  EXPECT_NE(unknown.err.find("newton"), std::string::npos) << unknown.err;
  Out both = xent_run(dir, train_args("--optimizer lbfgs --no-precondition --precondition inputs --out '" + (dir / "z") + "'"));
  EXPECT_EQ(both.code, 2);
  EXPECT_NE(both.err.find("--no-precondition contradicts --precondition inputs"), std::string::npos) << both.err;
}

TEST_F(TrainCli, CtrlCWithoutCheckpointKeepsTheLastEpoch) {
  // The report (and metrics.json) is refreshed while running: its appearance shows an epoch ended.
  const std::string out = dir / "int";
  const std::string cmd = "exec " + std::string(XENT_CLI_PATH) + " " +
                          train_args("--epochs 100000 --quiet --out '" + out + "'") + " 2>'" + (dir / "int.err") + "'";
  pid_t pid = 0;
  const char* argv[] = {"/bin/sh", "-c", cmd.c_str(), nullptr};
  ASSERT_EQ(posix_spawn(&pid, "/bin/sh", nullptr, nullptr, const_cast<char* const*>(argv), environ), 0);
  for (int i = 0; i < 600 && !std::filesystem::exists(out + "/metrics.json"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 130);
  const std::string err = slurp(dir / "int.err");
  EXPECT_NE(err.find("Wrote the model, metrics and report of epoch"), std::string::npos) << err;
  auto bytes = test::read_bytes(out + "/model.safetensors");
  auto m = parse_model(bytes.data(), bytes.size(), "model");
  ASSERT_TRUE(m.ok()) << m.status().message();
  auto j = nlohmann::json::parse(slurp(out + "/metrics.json"));
  EXPECT_EQ(m->info.at("epochs"), std::to_string(j["epochs"].size()));
  EXPECT_EQ(slurp(out + "/report.html").find("http-equiv=\"refresh\""), std::string::npos);
}

}  // namespace
}  // namespace xent

namespace xent {
namespace {

TEST_F(TrainCli, ClassNamesFromAFile) {
  test::write_bytes(dir / "names.txt", {'a', 'n', 't', '\n', 'b', 'e', 'e', '\r', '\n', 'c', 'a', 't', '\n', 'd', 'o', 'g', '\n'});
  Out t = xent_run(dir, train_args("--epochs 1 --no-report --class-names @'" + (dir / "names.txt") + "' --out '" + (dir / "n") + "'"));
  ASSERT_EQ(t.code, 0) << t.err;
  auto bytes = test::read_bytes(dir / "n/model.safetensors");
  auto m = parse_model(bytes.data(), bytes.size(), "model");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->class_names, (std::vector<std::string>{"ant", "bee", "cat", "dog"}));
  test::write_bytes(dir / "three.txt", {'a', '\n', 'b', '\n', 'c', '\n'});
  Out bad = xent_run(dir, train_args("--epochs 1 --no-report --class-names @'" + (dir / "three.txt") + "' --out '" + (dir / "n2") + "'"));
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("has 3 names, the data has 4 classes"), std::string::npos) << bad.err;
  Out missing = xent_run(dir, train_args("--epochs 1 --class-names @'" + (dir / "none.txt") + "' --out '" + (dir / "n3") + "'"));
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("none.txt"), std::string::npos) << missing.err;
}

TEST_F(TrainCli, CompareOverlaysRuns) {
  ASSERT_EQ(xent_run(dir, train_args("--epochs 2 --no-report --out '" + (dir / "ra") + "'")).code, 0);
  ASSERT_EQ(xent_run(dir, train_args("--epochs 3 --momentum 0.9 --no-report --out '" + (dir / "rb") + "'")).code, 0);
  Out c = xent_run(dir, "compare '" + (dir / "ra") + "' '" + (dir / "rb") + "' --out '" + (dir / "cmp") + "'");
  ASSERT_EQ(c.code, 0) << c.err;
  const std::string html = slurp(dir / "cmp/compare.html");
  const auto png = test::read_bytes(dir / "cmp/compare.png");
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png[1], 'P');
  for (const char* run : {"ra", "rb"}) {
    const std::string rd = dir / run;
    auto j = nlohmann::json::parse(slurp(rd + "/metrics.json"));
    const double acc = j["final"]["test_accuracy"].get<double>();
    const std::string row = "<td>" + rd + "</td><td>" + std::to_string(j["final"]["epoch"].get<int>()) + "</td>";
    EXPECT_NE(html.find(row), std::string::npos) << run;
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.2f%%", 100 * acc);
    EXPECT_NE(html.find(pct), std::string::npos) << run;
  }
  Out bad = xent_run(dir, "compare '" + (dir / "nothing") + "' --out '" + (dir / "cmp2") + "'");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("metrics.json"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace xent
