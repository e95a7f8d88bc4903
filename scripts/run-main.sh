#!/usr/bin/env bash
# The main job behind `make run`. Until the trainer lands: explain the seed example step by step.
set -euo pipefail
BUILD=${1:-build}
"./$BUILD/xent" explain cross-entropy --logits "[[1,2,3],[2,4,6]]" --target "[0,2]"
