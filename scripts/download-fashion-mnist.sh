#!/usr/bin/env bash
# Downloads the official Fashion-MNIST files (Zalando Research, MIT licence) into
# data/fashion-mnist (or the directory given as $1) and checks their published MD5 sums
# (scripts/download-idx.sh does the work). For real users; the tests never run it.
set -euo pipefail
# name  md5 (from github.com/zalandoresearch/fashion-mnist README)
exec bash "$(dirname "$0")/download-idx.sh" Fashion-MNIST "${1:-data/fashion-mnist}" \
  "${FASHION_MNIST_URL:-http://fashion-mnist.s3-website.eu-central-1.amazonaws.com}" \
  "train-images-idx3-ubyte.gz 8d4fb7e6c68d591d4c3dfef9ec88bf0d
train-labels-idx1-ubyte.gz 25c81989df183df01b3e8a0aad5dffbe
t10k-images-idx3-ubyte.gz bef4ecab320f06d8554ea6380940ec79
t10k-labels-idx1-ubyte.gz bb300cfdad3c16e7a12a480ee83cd310"
