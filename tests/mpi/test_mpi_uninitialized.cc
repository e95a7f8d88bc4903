// test_mpi_uninitialized.cc: calling the MPI layer without MPI_Init is an error Status, not a
// crash (run without mpirun).
#include <gtest/gtest.h>

#include <vector>

#include "xent/mpi.h"

TEST(MpiUninitialized, ErrorNotCrash) {
  std::vector<float> x(6, 0.f), loss(1);
  std::vector<std::int64_t> t = {0, 1};
  xent::Status s = xent::mpi::vocab_parallel_cross_entropy({x.data(), {2, 3}}, {t.data(), {2}}, {3, 0}, {},
                                                           {loss.data(), {}}, {}, {}, {});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not initialised"), std::string::npos) << s.message();
  EXPECT_FALSE(xent::mpi::check_initialized().ok());
}
