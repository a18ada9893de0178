// The server's request parser on any bytes: parse_generation_request either
// refuses the body with an ApiError (400 for the body, 422 for a field, with a
// message) or returns a request inside the server's limits. Then base64, which
// carries images both ways: decoding what was encoded gives the bytes back.
// A crash, another exception or a request past a limit is a bug.
//
// Input layout (fuzz/make_corpus.py writes seeds in it): a flags byte (bit 0:
// img2img), then the body.

#include <cstdint>
#include <string_view>

#include "fuzz_util.h"
#include "server/a1111_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool img2img = data[0] & 1;
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  const tiledraw::server::ServerLimits limits{256, 50, 8};
  constexpr uint64_t kRandomSeed = 1ull << 40;  // outside what a request may name
  try {
    const tiledraw::server::GenerationJobRequest job = tiledraw::server::parse_generation_request(body, img2img, limits, kRandomSeed);
    const tiledraw::GenerationRequest& r = job.generation;
    fuzz::check(r.batch >= 1 && job.iterations >= 1 && r.batch * job.iterations <= limits.max_images, "images past the limit");
    fuzz::check(!r.steps || (*r.steps >= 1 && *r.steps <= limits.max_steps), "steps past the limit");
    fuzz::check(r.width == 0 || (r.width >= 8 && r.width <= limits.max_side), "width past the limit");
    fuzz::check(r.height == 0 || (r.height >= 8 && r.height <= limits.max_side), "height past the limit");
    fuzz::check(r.seed == kRandomSeed || r.seed <= 0xffffffffu, "a seed past 32 bits");
    fuzz::check(r.strength >= 0.0 && r.strength <= 1.0, "strength outside 0..1");
    fuzz::check(img2img == r.init_image.has_value(), "an init image where none belongs, or none where one must be");
    if (r.init_image) {
      const tiledraw::Image& image = *r.init_image;
      fuzz::check(image.width <= 2 * limits.max_side && image.height <= 2 * limits.max_side, "an init image past the limit");
    }
  } catch (const tiledraw::server::ApiError& e) {
    fuzz::check((e.status() == 400 || e.status() == 422) && *e.what() != '\0', "a refusal without a 4xx status or message");
  }
  const std::span<const uint8_t> bytes(data, size);
  const std::vector<uint8_t> round_trip = tiledraw::server::base64_decode(tiledraw::server::base64_encode(bytes));
  fuzz::check(std::equal(round_trip.begin(), round_trip.end(), bytes.begin(), bytes.end()), "base64 lost bytes");
  return 0;
}
