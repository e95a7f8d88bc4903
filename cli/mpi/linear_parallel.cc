// linear_parallel.cc: `mpirun -np K xent linear-cross-entropy ...` (linear_parallel.h): each rank
// reads the whole hidden states and targets but only its rows [v0, v0 + V/K) of the weight (and of
// the bias and class weights) from the .npy files, at their offset (xent::read_npy_rows); the
// vocabulary-parallel layer runs; rank 0 gathers dweight/dbias and alone writes the outputs
// (atomically, all or none). Any rank's error becomes every rank's error. Built only with MPI.
#include "mpi/linear_parallel.h"

#include <cstdlib>
#include <cstring>
#include <optional>
#include <vector>

#include "cli.h"
#include "shared/arrays.h"
#include "xent/io/npy.h"
#include "xent/mpi.h"

namespace xent::cli {
namespace {

// Every rank learns the first failing rank's error (in rank order) and throws it.
void agree_or_throw(const Status& s, const char* what) {
  int K = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &K);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int code = static_cast<int>(s.code());
  std::vector<int> codes(static_cast<std::size_t>(K));
  MPI_Allgather(&code, 1, MPI_INT, codes.data(), 1, MPI_INT, MPI_COMM_WORLD);
  for (int r = 0; r < K; ++r) {
    if (codes[static_cast<std::size_t>(r)] == 0) continue;
    char msg[512] = {};
    if (r == rank) std::strncpy(msg, s.message().c_str(), sizeof msg - 1);
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, r, MPI_COMM_WORLD);
    throw_if_error(Status(static_cast<StatusCode>(codes[static_cast<std::size_t>(r)]),
                          "rank " + std::to_string(r) + ": " + msg),
                   what);
  }
}

// A Status instead of an exception, so that it can be agreed on.
template <class F>
Status catching(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return invalid_argument(e.what());
  }
  return ok_status();
}

struct MpiSession {
  MpiSession() {
    int init = 0;
    MPI_Initialized(&init);
    if (!init) MPI_Init(nullptr, nullptr);
  }
  ~MpiSession() {
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
  }
};

bool run(const LinearParallelArgs& a) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr && std::getenv("PMI_SIZE") == nullptr) return false;
  MpiSession session;
  int K = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &K);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  NpyArray h, t, w, loss;
  std::optional<NpyArray> b, cw, g, zl, dh, dw, db;
  std::int64_t V = 0, v0 = 0, Vr = 0;
  // Inputs: every rank reads hidden, targets and dloss whole, and its rows of the vocabulary.
  agree_or_throw(catching([&] {
                   h = read_input("--hidden", a.hidden);
                   t = read_input("--target", a.target);
                   if (!a.dloss.empty()) g = read_input("--dloss", a.dloss);
                   Shape ws;
                   Result<NpyArray> probe = read_npy_rows(a.weight, 0, 0, {}, &ws);
                   throw_if_error(probe.status(), "--weight");
                   if (ws.rank() != 2)
                     throw InputError("--weight '" + a.weight + "' must have shape (V, H); found " + ws.to_string());
                   V = ws[0];
                   v0 = xent::mpi::even_shard(V, rank, K, &Vr).first_class;
                   auto rows = [&](const std::string& flag, const std::string& path) {
                     Result<NpyArray> r = read_npy_rows(path, v0, Vr);
                     throw_if_error(r.status(), flag);
                     return std::move(r).value();
                   };
                   w = rows("--weight", a.weight);
                   if (!a.bias.empty()) b = rows("--bias", a.bias);
                   if (!a.class_weight.empty()) cw = rows("--class-weight", a.class_weight);
                   const Shape ls = a.reduction == Reduction::kNone && h.shape().rank() == 2 ? Shape{h.shape()[0]} : Shape{};
                   loss = make_array(h.dtype(), ls);
                   if (!a.z_loss_out.empty()) zl = make_array(h.dtype(), ls);
                   if (!a.grad_hidden.empty()) dh = make_array(h.dtype(), h.shape());
                   if (!a.grad_weight.empty()) dw = make_array(h.dtype(), w.shape());
                   if (!a.grad_bias.empty() && b) db = make_array(h.dtype(), b->shape());
                 }),
                 "linear-cross-entropy");
  xent::mpi::VocabParallelOptions o;
  if (cw) o.class_weight = cw->view();
  o.ignore_index = a.ignore_index;
  o.reduction = a.reduction;
  o.label_smoothing = a.label_smoothing;
  o.lse_square_scale = a.lse_square_scale;
  o.softcap = a.softcap;
  o.workspace_limit_bytes = static_cast<std::size_t>(a.workspace_mib * 1048576.0);
  // Collective; its errors are already the same on every rank.
  throw_if_error(xent::mpi::vocab_parallel_linear_cross_entropy(
                     h.view(), w.view(), b ? b->view() : ConstTensorView{}, t.view(), {V, v0}, o,
                     loss.mutable_view(), zl ? zl->mutable_view() : TensorView{}, g ? g->view() : ConstTensorView{},
                     dh ? dh->mutable_view() : TensorView{}, dw ? dw->mutable_view() : TensorView{},
                     db ? db->mutable_view() : TensorView{}),
                 "linear-cross-entropy");
  // dweight / dbias rows to rank 0, in rank order (MPI_Gatherv of bytes).
  auto gather_rows = [&](const NpyArray& part, std::int64_t row_elems, Shape full_shape) -> std::optional<NpyArray> {
    const std::size_t esz = dtype_size(part.dtype());
    const int mine = static_cast<int>(static_cast<std::size_t>(Vr * row_elems) * esz);
    std::vector<int> counts(static_cast<std::size_t>(K)), displs(static_cast<std::size_t>(K));
    MPI_Gather(&mine, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::optional<NpyArray> full;
    if (rank == 0) {
      for (int r = 1; r < K; ++r)
        displs[static_cast<std::size_t>(r)] = displs[static_cast<std::size_t>(r - 1)] + counts[static_cast<std::size_t>(r - 1)];
      full = make_array(part.dtype(), full_shape);
    }
    MPI_Gatherv(part.data(), mine, MPI_BYTE, rank == 0 ? full->data() : nullptr, counts.data(), displs.data(), MPI_BYTE,
                0, MPI_COMM_WORLD);
    return full;
  };
  std::optional<NpyArray> dw_full, db_full;
  if (dw) dw_full = gather_rows(*dw, w.shape()[1], Shape{V, w.shape()[1]});
  if (db) db_full = gather_rows(*db, 1, Shape{V});
  Status written = ok_status();
  if (rank == 0) {
    written = catching([&] {
      std::vector<Output> outputs = {{"--out", a.out, loss.view(), "loss"}};
      if (zl) outputs.push_back({"--z-loss", a.z_loss_out, zl->view(), "z_loss"});
      if (dh) outputs.push_back({"--grad-hidden", a.grad_hidden, dh->view(), "grad_hidden"});
      if (dw_full) outputs.push_back({"--grad-weight", a.grad_weight, dw_full->view(), "grad_weight"});
      if (db_full) outputs.push_back({"--grad-bias", a.grad_bias, db_full->view(), "grad_bias"});
      write_outputs(outputs);
    });
  }
  agree_or_throw(written, "writing the outputs");
  return true;
}

struct Install {
  Install() { g_linear_parallel = &run; }
} g_install;

}  // namespace
}  // namespace xent::cli
