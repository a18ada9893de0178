// Generation through the library's public API: several at once, seeds,
// initial noise, cancellation, a model that makes NaN, and the memory limit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "sampling/sampler.h"
#include "test_util.h"
#include "tiledraw/error.h"
#include "tiledraw/memory.h"
#include "tiledraw/pipeline.h"

namespace tiledraw {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

GenerationRequest small_request() {
  GenerationRequest r;
  r.classes = {"1"};
  r.batch = 2;
  r.steps = 4;
  r.seed = 3;
  return r;
}

GenerationRequest wide_request() {
  GenerationRequest r;
  r.classes = {"0", "2"};
  r.steps = 3;
  r.sampler = Sampler::Euler;
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

LoadOptions with(Precision precision, const std::string& accelerator = "") {
  LoadOptions options;
  options.precision = precision;
  options.accelerator = accelerator;
  return options;
}

// Two shapes at once on two threads, sharing a freshly loaded model and a
// program cache that starts empty (so both threads fill the model's position
// tables and prepare programs): each gets the images it gets alone. Under
// ThreadSanitizer (make tsan) this also checks for races.
TEST(Generator, TwoGenerationsAtOnceMakeTheImagesEachMakesAlone) {
  test::TempDir dir;
  const std::string path = test::write_pixel_dit(dir);
  const auto alone = Pipeline::load(path, with(Precision::Int8, preferred_accelerator_name()));
  const std::vector<Image> small = alone->generate(small_request()).images, wide = alone->generate(wide_request()).images;
  ASSERT_EQ(small.size(), 2u);
  ASSERT_EQ(wide.size(), 2u);
  EXPECT_EQ(wide[0].width, 16);
  EXPECT_EQ(wide[0].height, 12);
  EXPECT_NE(small[0].pixels, small[1].pixels);

  for (int round = 0; round < 3; ++round) {
    const auto shared = Pipeline::load(path, with(Precision::Int8, preferred_accelerator_name()));
    std::vector<Image> small_at_once, wide_at_once;
    std::thread first([&] { small_at_once = shared->generate(small_request()).images; });
    std::thread second([&] { wide_at_once = shared->generate(wide_request()).images; });
    first.join();
    second.join();
    expect_same_pictures(small_at_once, small, "8 x 8");
    expect_same_pictures(wide_at_once, wide, "16 x 12");
  }
}

// Freeing each part as the run passes it changes nothing in the pictures, and
// the pipeline refuses to run again rather than run on freed weights.
TEST(Generator, GenerateAndReleaseMakesTheSamePicturesThenRefusesToRunAgain) {
  test::TempDir dir;
  const std::string path = test::write_pixel_dit(dir);
  const GenerationResult kept = Pipeline::load(path, with(Precision::Int8, "ref"))->generate(wide_request());
  const auto once = Pipeline::load(path, with(Precision::Int8, "ref"));
  expect_same_pictures(once->generate_and_release(wide_request()).images, kept.images, "released");
  EXPECT_THAT([&] { once->generate(wide_request()); }, ::testing::ThrowsMessage<Error>(HasSubstr("load it again")));
  EXPECT_THROW(once->generate_and_release(wide_request()), Error);
  EXPECT_THROW(once->latent_shape(wide_request()), Error);
}

// A1111's seeds: image i of a batch is the image seed + i makes alone, and its
// parameters say so.
TEST(Generator, ImageIOfABatchIsTheImageItsSeedMakesAlone) {
  test::TempDir dir;
  const auto pipeline = Pipeline::load(test::write_pixel_dit(dir), with(Precision::AsStored, "ref"));
  for (const Sampler sampler : {Sampler::Ddim, Sampler::EulerAncestral, Sampler::Ddpm}) {
    GenerationRequest batch = small_request();
    batch.batch = 3;
    batch.sampler = sampler;
    const GenerationResult three = pipeline->generate(batch);
    ASSERT_EQ(three.images.size(), 3u);
    GenerationRequest third = batch;
    third.batch = 1;
    third.seed = batch.seed + 2;
    const GenerationResult alone = pipeline->generate(third);
    EXPECT_EQ(three.images[2].pixels, alone.images[0].pixels) << sampler_name(sampler);
    EXPECT_EQ(three.latents.data.size(), 3 * alone.latents.data.size());
    EXPECT_THAT(three.parameters[2], HasSubstr("Seed: 5,"));
    EXPECT_EQ(three.parameters[2], alone.parameters[0]);
  }
}

// Initial noise given as a tensor replaces the seeded draw, and the seeded
// streams still advance past it: noise equal to the seed's own gives the
// seed's images, stochastic samplers too.
TEST(Generator, GivenInitialNoiseReplacesTheSeededDraw) {
  test::TempDir dir;
  const auto pipeline = Pipeline::load(test::write_pixel_dit(dir), with(Precision::AsStored, "ref"));
  GenerationRequest request = small_request();
  request.sampler = Sampler::EulerAncestral;
  const std::vector<int64_t> shape = pipeline->latent_shape(request);
  EXPECT_EQ(shape, (std::vector<int64_t>{2, 1, 8, 8}));
  FloatTensor noise{shape, std::vector<float>(128)};
  for (int image = 0; image < 2; ++image) {
    sampling::NormalNoise stream(request.seed + static_cast<uint64_t>(image));
    stream.fill(noise.data.data() + 64 * image, 64);
  }
  const GenerationResult seeded = pipeline->generate(request);
  request.initial_noise = noise;
  EXPECT_EQ(pipeline->generate(request).latents.data, seeded.latents.data);
  for (float& v : request.initial_noise->data) v = -v;
  EXPECT_NE(pipeline->generate(request).latents.data, seeded.latents.data);
  request.initial_noise->shape = {1, 1, 8, 8};
  EXPECT_THAT([&] { pipeline->generate(request); },
              ::testing::ThrowsMessage<Error>(HasSubstr("the initial noise has shape [1, 1, 8, 8], this request needs [2, 1, 8, 8]")));
}

// The cancel flag stops a run at the next op; the caller gets Cancelled and no images.
TEST(Generator, ACancelFlagStopsTheRunWithinAStep) {
  test::TempDir dir;
  const auto pipeline = Pipeline::load(test::write_pixel_dit(dir), with(Precision::AsStored, "ref"));
  std::atomic<bool> cancel{false};
  int steps_done = 0;
  GenerationRequest request = small_request();
  request.steps = 10;
  try {
    pipeline->generate(request, [&](int done, int) {
      steps_done = done;
      if (done == 3) cancel = true;
    }, &cancel);
    ADD_FAILURE() << "a set cancel flag must stop the run";
  } catch (const Cancelled& e) {
    EXPECT_THAT(e.what(), HasSubstr("cancelled at step 4/10"));
  }
  EXPECT_EQ(steps_done, 3);
}

// On the float path (a NaN weight) and through the accelerator (a NaN bias,
// whose NaN the next layer's 8-bit S input carries as a NaN row scale).
TEST(Generator, ANanInTheModelStopsAtTheFirstStepNamingTheOp) {
  struct Case {
    const char* poisoned;
    Precision precision;
    const char* op;
  };
  for (const Case& c : {Case{"blocks.0.mlp.fc2.weight", Precision::AsStored, "blocks.0.mlp.fc2"},
                        Case{"blocks.0.mlp.fc1.bias", Precision::Int8, "blocks.0.mlp.fc1"}}) {
    test::TempDir dir;
    const auto pipeline = Pipeline::load(test::write_pixel_dit(dir, c.poisoned), with(c.precision, preferred_accelerator_name()));
    int steps_done = 0;
    try {
      pipeline->generate(small_request(), [&](int done, int) { steps_done = done; });
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
  EXPECT_THAT([&] { Pipeline::load(test::write_pixel_dit(dir, "blocks.0.mlp.fc2.weight"), with(Precision::Int8, "ref")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("'blocks.0.mlp.fc2.weight' holds NaN or infinity (row 0); cannot quantize it")));
}

TEST(Generator, WorkOverTheMemoryLimitIsRefusedBeforeItStarts) {
  test::TempDir dir;
  const auto pipeline = Pipeline::load(test::write_pixel_dit(dir), with(Precision::AsStored, "ref"));
  const uint64_t before = memory_reserved();
  const uint64_t default_limit = memory_limit();
  set_memory_limit(before + (4u << 20));
  GenerationRequest big = small_request();
  big.height = big.width = 1024;  // 262144 tokens: a 32 MiB position table and more
  int steps_done = 0;
  try {
    pipeline->generate(big, [&](int done, int) { steps_done = done; });
    ADD_FAILURE() << "1024 x 1024 needs more than 4 MiB";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("over the memory limit of"));
    EXPECT_THAT(e.what(), Not(HasSubstr("--max-memory"))) << "the library names no flag of the program";
  }
  EXPECT_EQ(steps_done, 0);
  EXPECT_EQ(memory_reserved(), before) << "a refused run gives back what it reserved";
  EXPECT_EQ(pipeline->generate(small_request()).images.size(), 2u) << "small work still fits";
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
