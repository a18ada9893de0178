#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>

#include "kernels/gemm/f32_gemm.h"
#include "kernels/gemm/onednn_util.h"
#include "tiledraw/error.h"

namespace tiledraw::kernels {
namespace {

using dnnl::memory;
using onednn::engine;
using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, bool>;

struct Primitive {
  dnnl::matmul matmul;
  memory::desc scratchpad;
};

const Primitive& primitive(int64_t m, int64_t k, int64_t n, int64_t ldy, bool bias) {
  static std::mutex mutex;
  static std::map<Key, Primitive> cache;
  std::lock_guard lock(mutex);
  const Key key{m, k, n, ldy, bias};
  if (const auto it = cache.find(key); it != cache.end()) return it->second;
  const memory::desc src({m, k}, memory::data_type::f32, memory::format_tag::ab);
  const memory::desc weights({k, n}, memory::data_type::f32, memory::format_tag::ba);  // w[n, k] read transposed
  const memory::desc bias_desc = bias ? memory::desc({1, n}, memory::data_type::f32, memory::format_tag::ab) : memory::desc();
  const memory::desc dst({m, n}, memory::data_type::f32, memory::dims{ldy, 1});
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, weights, bias_desc, dst), onednn::user_scratchpad(), engine());
  return cache.emplace(key, Primitive{dnnl::matmul(pd), pd.scratchpad_desc()}).first->second;
}

}  // namespace

void f32_gemm_onednn(const float* x, int64_t m, int64_t k, const float* w, int64_t n, const float* bias, float* y,
                     int64_t ldy) {
  try {
    const Primitive& matmul = primitive(m, k, n, ldy, bias != nullptr);
    memory src({{m, k}, memory::data_type::f32, memory::format_tag::ab}, engine(), const_cast<float*>(x));
    memory weights({{k, n}, memory::data_type::f32, memory::format_tag::ba}, engine(), const_cast<float*>(w));
    memory dst({{m, n}, memory::data_type::f32, memory::dims{ldy, 1}}, engine(), y);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src},
                                         {DNNL_ARG_WEIGHTS, weights},
                                         {DNNL_ARG_DST, dst},
                                         {DNNL_ARG_SCRATCHPAD, onednn::thread_scratchpad(matmul.scratchpad)}};
    if (bias) {
      args.emplace(DNNL_ARG_BIAS,
                   memory({{1, n}, memory::data_type::f32, memory::format_tag::ab}, engine(), const_cast<float*>(bias)));
    }
    thread_local dnnl::stream stream(engine());
    matmul.matmul.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    throw Error(std::string("float matmul failed in oneDNN: ") + e.what());
  }
}

}  // namespace tiledraw::kernels
