#!/bin/sh
# mpirun.sh K PROGRAM [ARGS...]: runs PROGRAM on K ranks with Open MPI's mpirun (as root too, and
# more ranks than cores); exit 77 (ctest: skipped) when there is no mpirun.
k=$1
shift
if ! command -v mpirun >/dev/null 2>&1; then
  echo "mpirun not found: skipping (install openmpi-bin)"
  exit 77
fi
export OMPI_MCA_rmaps_base_oversubscribe=1
exec mpirun --allow-run-as-root --oversubscribe -np "$k" "$@"
