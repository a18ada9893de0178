#pragma once

#include <cmath>
#include <cstdint>

#include "tiledraw/accel.h"

// The activations of the linear layer's epilogue in plain C++, in double
// precision: the oracle for the vector versions and the scalar path.
namespace tiledraw::kernels {

inline float activate(Activation activation, float z) {
  switch (activation) {
    case Activation::GeluTanh: {
      const double x = z;
      return static_cast<float>(0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))));
    }
    case Activation::Silu:
      return static_cast<float>(static_cast<double>(z) / (1.0 + std::exp(-static_cast<double>(z))));
    case Activation::None:
      break;
  }
  return z;
}

}  // namespace tiledraw::kernels
