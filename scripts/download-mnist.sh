#!/usr/bin/env bash
# Downloads the MNIST files (Yann LeCun and Corinna Cortes; from the mirror torchvision uses) into
# data/mnist (or the directory given as $1) and checks their MD5 sums (those torchvision checks;
# scripts/download-idx.sh does the work). For real users; the tests never run it.
set -euo pipefail
# name  md5 (torchvision.datasets.MNIST.resources)
exec bash "$(dirname "$0")/download-idx.sh" MNIST "${1:-data/mnist}" \
  "${MNIST_URL:-https://ossci-datasets.s3.amazonaws.com/mnist}" \
  "train-images-idx3-ubyte.gz f68b3c2dcbeaaa9fbdd348bbdeb94873
train-labels-idx1-ubyte.gz d53e105ee54ea40749a09fcbcd1e9432
t10k-images-idx3-ubyte.gz 9fb629c4189551a2d022fa330f9573f3
t10k-labels-idx1-ubyte.gz ec29112dd5afa0611ce80d1b7f02629c"
