// xent.h: umbrella header for the xent library (softmax, cross-entropy and friends).
#pragma once

#include "xent/linear_cross_entropy.h"
#include "xent/losses.h"
#include "xent/runtime.h"
#include "xent/softmax.h"
#include "xent/status.h"
#include "xent/tensor.h"
