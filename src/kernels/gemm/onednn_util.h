#pragma once

#include <cstdint>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

// What every oneDNN primitive here shares: one CPU engine, and a scratchpad
// the caller owns. With oneDNN's own scratchpad (the default), a primitive
// keeps one buffer for all its runs, so two threads running the same primitive
// at once (two generations on one model) overwrite each other's partial
// results: wrong pictures, NaN, or a crash. Each thread passes its own.
namespace tiledraw::kernels::onednn {

inline dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// Attributes for a primitive that takes its scratchpad as an argument.
inline dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// This thread's scratchpad for a primitive, grown as needed.
inline dnnl::memory thread_scratchpad(const dnnl::memory::desc& desc) {
  thread_local std::vector<uint8_t> buffer;
  if (buffer.size() < desc.get_size()) buffer.resize(desc.get_size());
  return dnnl::memory(desc, engine(), buffer.data());
}

}  // namespace tiledraw::kernels::onednn
