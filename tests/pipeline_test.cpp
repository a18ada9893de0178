// Generation through the library: several at once, a model that makes NaN,
// and the memory limit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "models/dit.h"
#include "pipeline/generation.h"
#include "test_util.h"
#include "tiledraw/error.h"
#include "tiledraw/memory.h"

namespace tiledraw {
namespace {

using ::testing::HasSubstr;

pipeline::GenerationRequest small_request() {
  pipeline::GenerationRequest r;
  r.classes = {1};
  r.per_class = 2;
  r.steps = 4;
  r.seed = 3;
  return r;
}

pipeline::GenerationRequest wide_request() {
  pipeline::GenerationRequest r;
  r.classes = {0, 2};
  r.steps = 3;
  r.sampler = sampling::SamplerKind::Euler;
  r.cfg_scale = 2.5;
  r.seed = 11;
  r.height = 12;
  r.width = 16;
  return r;
}

void expect_same_pictures(const std::vector<Image>& a, const std::vector<Image>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].width, b[i].width) << what;
    EXPECT_EQ(a[i].pixels, b[i].pixels) << what << ", image " << i;
  }
}

// Two shapes at once on two threads, sharing a freshly loaded model and a
// program cache that starts empty (so both threads fill the model's position
// tables and prepare programs): each gets the images it gets alone. Under
// ThreadSanitizer (make tsan) this also checks for races.
TEST(Generator, TwoGenerationsAtOnceMakeTheImagesEachMakesAlone) {
  test::TempDir dir;
  const SafetensorsFile file = SafetensorsFile::open(test::write_pixel_dit(dir));
  const auto accel = make_accelerator(preferred_accelerator_name());
  const models::DitModel alone_model(file, *accel, models::Precision::Int8);
  ProgramCache alone_cache;
  const pipeline::Generator alone(alone_model, nullptr, *accel, alone_cache);
  const std::vector<Image> small = alone.generate(small_request()), wide = alone.generate(wide_request());
  ASSERT_EQ(small.size(), 2u);
  ASSERT_EQ(wide.size(), 2u);
  EXPECT_EQ(wide[0].width, 16);
  EXPECT_EQ(wide[0].height, 12);
  EXPECT_NE(small[0].pixels, small[1].pixels);

  for (int round = 0; round < 3; ++round) {
    const models::DitModel model(file, *accel, models::Precision::Int8);
    ProgramCache shared_cache;
    const pipeline::Generator shared(model, nullptr, *accel, shared_cache);
    std::vector<Image> small_at_once, wide_at_once;
    std::thread first([&] { small_at_once = shared.generate(small_request()); });
    std::thread second([&] { wide_at_once = shared.generate(wide_request()); });
    first.join();
    second.join();
    expect_same_pictures(small_at_once, small, "8 x 8");
    expect_same_pictures(wide_at_once, wide, "16 x 12");
  }
}

// On the float path (a NaN weight) and through the accelerator (a NaN bias,
// whose NaN the next layer's 8-bit S input carries as a NaN row scale).
TEST(Generator, ANanInTheModelStopsAtTheFirstStepNamingTheOp) {
  struct Case {
    const char* poisoned;
    models::Precision precision;
    const char* op;
  };
  for (const Case& c : {Case{"blocks.0.mlp.fc2.weight", models::Precision::AsStored, "blocks.0.mlp.fc2"},
                        Case{"blocks.0.mlp.fc1.bias", models::Precision::Int8, "blocks.0.mlp.fc1"}}) {
    test::TempDir dir;
    const SafetensorsFile file = SafetensorsFile::open(test::write_pixel_dit(dir, c.poisoned));
    const auto accel = make_accelerator(preferred_accelerator_name());
    const models::DitModel model(file, *accel, c.precision);
    ProgramCache cache;
    const pipeline::Generator generator(model, nullptr, *accel, cache);
    int steps_done = 0;
    try {
      generator.generate(small_request(), [&](int done, int) { steps_done = done; });
      ADD_FAILURE() << c.poisoned << ": a NaN must stop the run";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("step 1/4 (timestep 999): NaN or Inf in the output, first made by linear (op "));
      EXPECT_THAT(e.what(), HasSubstr(std::string(", '") + c.op + "')"));
    }
    EXPECT_EQ(steps_done, 0);
  }
}

TEST(Generator, AWeightWithNanIsRefusedWhenQuantizedAtLoad) {
  test::TempDir dir;
  const SafetensorsFile file = SafetensorsFile::open(test::write_pixel_dit(dir, "blocks.0.mlp.fc2.weight"));
  const auto accel = make_accelerator("ref");
  EXPECT_THAT([&] { models::DitModel(file, *accel, models::Precision::Int8); },
              ::testing::ThrowsMessage<Error>(HasSubstr("'blocks.0.mlp.fc2.weight' holds NaN or infinity (row 0); cannot quantize it")));
}

TEST(Generator, WorkOverTheMemoryLimitIsRefusedBeforeItStarts) {
  test::TempDir dir;
  const SafetensorsFile file = SafetensorsFile::open(test::write_pixel_dit(dir));
  const auto accel = make_accelerator("ref");
  const models::DitModel model(file, *accel);
  ProgramCache cache;
  const pipeline::Generator generator(model, nullptr, *accel, cache);
  const uint64_t before = memory_reserved();
  const uint64_t default_limit = memory_limit();
  set_memory_limit(before + (4u << 20));
  pipeline::GenerationRequest big = small_request();
  big.height = big.width = 1024;  // 262144 tokens: a 32 MiB position table and more
  int steps_done = 0;
  try {
    generator.generate(big, [&](int done, int) { steps_done = done; });
    ADD_FAILURE() << "1024 x 1024 needs more than 4 MiB";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("over the memory limit of"));
    EXPECT_THAT(e.what(), HasSubstr("(--max-memory)"));
  }
  EXPECT_EQ(steps_done, 0);
  EXPECT_EQ(memory_reserved(), before) << "a refused run gives back what it reserved";
  EXPECT_EQ(generator.generate(small_request()).size(), 2u) << "small work still fits";
  set_memory_limit(default_limit);
}

TEST(MemoryLimit, SizesParseAsPeopleWriteThem) {
  EXPECT_EQ(parse_memory_size("1048576", "--max-memory"), 1048576u);
  EXPECT_EQ(parse_memory_size("512M", "--max-memory"), 512ull << 20);
  EXPECT_EQ(parse_memory_size("4g", "--max-memory"), 4ull << 30);
  EXPECT_EQ(parse_memory_size("1.5GiB", "--max-memory"), 3ull << 29);
  EXPECT_EQ(parse_memory_size("2KB", "--max-memory"), 2048u);
  for (const char* bad : {"", "M", "-1G", "0", "12Q", "nan", "1e40T"}) {
    EXPECT_THROW(parse_memory_size(bad, "--max-memory"), Error) << bad;
  }
  EXPECT_GT(physical_memory_bytes(), 1ull << 28);
}

}  // namespace
}  // namespace tiledraw
