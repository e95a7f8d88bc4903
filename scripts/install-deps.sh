#!/usr/bin/env bash
# Installs the Debian packages xent needs to build and test, only those that are missing.
# Not a general provisioning script: it knows Debian 12 (bookworm) package names and nothing else.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libhwy-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libfmt-dev nlohmann-json3-dev zlib1g-dev
  libopenblas-dev libopenblas0-pthread libdeflate-dev libcairo2-dev libpng-dev
  python3 python3-numpy python3-torch
  python3-dev pybind11-dev python3-pybind11 python3-pytest python3-setuptools python3-pip python3-venv
  clang libclang-rt-14-dev strace
  libopenmpi-dev openmpi-bin
  libdnnl-dev  # bench/onednn: oneDNN, the softmax-family peer of xent bench (benchmarks only)
  ocl-icd-opencl-dev  # dnnl-config.cmake requires OpenCL (only Recommended by libdnnl-dev)
  chromium  # tests/train/test_report_browser.py loads report.html headless (skipped without it)
  libcsv-dev  # xent_io's CSV reader (src/io/csv.cc)
  python3-sklearn  # tests/train/test_features_cli.py compares with LogisticRegression (skipped without it)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
