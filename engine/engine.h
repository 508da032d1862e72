// One include for users of the engine.
#pragma once
#include "engine/autograd.h"
#include "engine/check.h"
#include "engine/recompute.h"
#include "engine/device.h"
#include "engine/layers.h"
#include "engine/module.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "engine/runtime.h"
#include "engine/tensor.h"
