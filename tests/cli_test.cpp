#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"
#include "models/dit.h"
#include "runtime/executor.h"
#include "tiledraw/pipeline.h"
#include "tiledraw/safetensors.h"

namespace tiledraw {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct CommandResult {
  int status;
  std::string out;
  std::string err;
};

class Cli : public ::testing::Test {
 protected:
  CommandResult run(const std::string& args) {
    const std::string command = std::string(TILEDRAW_BINARY) + " " + args + " >" + dir_.file("stdout") + " 2>" +
                                dir_.file("stderr") + " </dev/null";
    const int status = std::system(command.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), test::read_text(dir_.file("stdout")),
            test::read_text(dir_.file("stderr"))};
  }
  // An error is one line on stderr naming what is wrong, exit status 2.
  void expect_error(const std::string& args, const std::string& message) {
    const CommandResult r = run(args);
    EXPECT_EQ(r.status, 2) << args;
    EXPECT_THAT(r.err, StartsWith("tiledraw: ")) << args;
    EXPECT_THAT(r.err, HasSubstr(message)) << args;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  std::string model() {
    const std::vector<float> w = test::random_floats(128 * 64, 7, 0.1f);
    const std::vector<float> bias(w.begin(), w.begin() + 64);
    std::vector<TensorSource> t;
    t.push_back(TensorSource::from_bytes("blocks.0.attn.proj.weight", DType::F32, {128, 64}, test::bytes_of(w)));
    t.push_back(TensorSource::from_bytes("blocks.0.attn.proj.bias", DType::F32, {64}, test::bytes_of(bias)));
    write_safetensors(dir_.file("model.safetensors"), std::move(t), {{"architecture", "dit"}});
    return dir_.file("model.safetensors");
  }
  test::TempDir dir_;
};

TEST_F(Cli, ConvertPrintsASummaryAndInspectShowsThe8BitSWeights) {
  const std::string in = model();
  const CommandResult c = run("convert -q " + in + " " + dir_.file("out.safetensors"));
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_EQ(c.err, "");
  EXPECT_THAT(c.out, HasSubstr("quantized 1 tensors to 8-bit S, kept 1 in floating point, copied 0 unchanged"));
  EXPECT_THAT(c.out, HasSubstr("relative reconstruction error: mean 0.00"));
  EXPECT_THAT(c.out, HasSubstr("(blocks.0.attn.proj.weight)"));
  EXPECT_THAT(c.out, HasSubstr("1 8-bit S weights stored as panels"));

  const CommandResult i = run("inspect " + dir_.file("out.safetensors"));
  ASSERT_EQ(i.status, 0) << i.err;
  EXPECT_THAT(i.out, HasSubstr("format = 8bit-s"));
  EXPECT_THAT(i.out, HasSubstr("3, of which 1 are 8-bit S weights"));
  EXPECT_THAT(i.out, ::testing::ContainsRegex("U8 +\\[128, 64\\] +8.0 KiB +blocks.0.attn.proj.weight  \\[8-bit S, panels\\]"));

  ASSERT_EQ(run("convert -q --layout rows " + in + " " + dir_.file("rows.safetensors")).status, 0);
  EXPECT_THAT(run("inspect " + dir_.file("rows.safetensors")).out,
              ::testing::ContainsRegex("I8 +\\[128, 64\\] +8.0 KiB +blocks.0.attn.proj.weight  \\[8-bit S\\]"));

  const CommandResult j = run("inspect --json " + dir_.file("out.safetensors"));
  ASSERT_EQ(j.status, 0) << j.err;
  const auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["metadata"]["architecture"], "dit");
  std::map<std::string, std::string> roles;
  for (const auto& t : doc["tensors"]) roles[t["name"]] = t["role"];
  EXPECT_EQ(roles["blocks.0.attn.proj.weight"], "8bit-s-weight");
  EXPECT_EQ(roles["blocks.0.attn.proj.weight_scale"], "8bit-s-scale");
  EXPECT_EQ(roles["blocks.0.attn.proj.bias"], "tensor");
}

TEST_F(Cli, ConvertShowsPlainProgressLinesWhenStderrIsNotATerminal) {
  const CommandResult c = run("convert " + model() + " " + dir_.file("out.safetensors"));
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_THAT(c.err, HasSubstr("convert: 3/3  "));
  EXPECT_EQ(c.err.find('\r'), std::string::npos);
}

TEST_F(Cli, BadInputGetsOneLineAndExitStatusTwo) {
  expect_error("inspect " + dir_.file("missing.safetensors"), dir_.file("missing.safetensors") + ": cannot open");
  std::ofstream(dir_.file("notes.txt")) << "not a model, just some text in a file";
  expect_error("inspect " + dir_.file("notes.txt"), dir_.file("notes.txt") + ": not a safetensors file");
  expect_error("convert " + dir_.file("notes.txt") + " " + dir_.file("out.safetensors"), "not a safetensors file");
  expect_error("convert " + model(), "output is required");
  expect_error("convert --layout columns " + model() + " " + dir_.file("out.safetensors"), "--layout: columns not in {panels,rows}");
  expect_error("convert --min-elements -5 " + model() + " " + dir_.file("out.safetensors"),
               "--min-elements: must be a whole number >= 0");
  expect_error("convert --config '[1' " + model() + " " + dir_.file("out.safetensors"), "--config: not a JSON object");
  expect_error("convert " + model() + " " + dir_.file("no/such/dir/out.safetensors"), "cannot create a file there");
  expect_error("convert " + model() + " " + dir_.path().string(), "is a folder; name the file to write");
  expect_error("inspect --frobnicate x", "--frobnicate");
  expect_error("transmogrify", "unknown command 'transmogrify'");
  expect_error("", "subcommand");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("out.safetensors"))) << "no partial output after a failure";
}

TEST_F(Cli, HelpVersionAndInfoSucceed) {
  EXPECT_EQ(run("--help").status, 0);
  EXPECT_EQ(run("convert --help").status, 0);
  const CommandResult v = run("--version");
  EXPECT_EQ(v.status, 0);
  EXPECT_THAT(v.out, StartsWith("tiledraw "));
  const CommandResult i = run("info");
  EXPECT_EQ(i.status, 0);
  EXPECT_THAT(i.out, HasSubstr("amx"));
  EXPECT_THAT(i.out, HasSubstr("kernels"));
}

TEST_F(Cli, GlobalAccelAndThreadsOptionsReachTheRuntime) {
  const CommandResult r = run("info --accel ref --threads 1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("accel     ref: chosen by --accel"));
  EXPECT_THAT(r.out, HasSubstr("threads   1\n"));
  expect_error("info --accel tpu", "--accel");
  expect_error("info --threads 0", "--threads");
}

TEST_F(Cli, BenchDitRunsASmallStackAndReportsItsFigures) {
  const CommandResult r = run("bench dit --depth 2 --width 64 --heads 4 --tokens 20 --runs 1 --profile");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("graph     38 nodes built"));  // with each block's q, k, v views
  EXPECT_THAT(r.out, HasSubstr("without reuse"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("linear +20 "));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("attention +4 "));
  expect_error("bench dit --width 100 --heads 16", "--width must be a multiple of --heads");
}

TEST_F(Cli, ForwardRunsADitOnNamedInputsAndWritesItsOutput) {
  const std::string model = std::string(TILEDRAW_SOURCE_DIR) + "/examples/tiny-dit-f16.safetensors";
  const std::vector<float> x = test::random_floats(2 * 4 * 8 * 8, 3);
  const std::vector<int64_t> t = {10, 999}, y = {1, 10};
  std::vector<TensorSource> inputs;
  inputs.push_back(TensorSource::from_bytes("x", DType::F32, {2, 4, 8, 8}, test::bytes_of(x)));
  inputs.push_back(TensorSource::from_bytes("t", DType::I64, {2}, test::bytes_of(t)));
  inputs.push_back(TensorSource::from_bytes("y", DType::I64, {2}, test::bytes_of(y)));
  write_safetensors(dir_.file("in.safetensors"), std::move(inputs), {});
  const CommandResult r = run("forward -m " + model + " --inputs " + dir_.file("in.safetensors") + " -o " +
                              dir_.file("out.safetensors"));
  ASSERT_EQ(r.status, 0) << r.err;
  const SafetensorsFile out = SafetensorsFile::open(dir_.file("out.safetensors"));
  EXPECT_EQ(out.at("out").shape, (std::vector<int64_t>{2, 8, 8, 8}));
  EXPECT_EQ(out.at("out").dtype, DType::F32);
  const auto* values = reinterpret_cast<const float*>(out.data(out.at("out")).data());
  // The same forward in this process, through the library.
  const auto accel = make_accelerator("auto");
  const SafetensorsFile file = SafetensorsFile::open(model);
  const models::DitModel dit(file, *accel);
  const auto built = dit.build({2, 8, 8});
  ProgramCache cache;
  runtime::Executor exec(built->graph, *accel, cache);
  const std::vector<float> tf = {10.0f, 999.0f}, yf = {1.0f, 10.0f};
  exec.run({x.data(), tf.data(), yf.data()});
  const float* expected = exec.data(built->output);
  for (int i = 0; i < 2 * 8 * 8 * 8; ++i) ASSERT_NEAR(values[i], expected[i], 1e-5 * (1 + std::abs(expected[i]))) << i;

  std::vector<TensorSource> partial;
  partial.push_back(TensorSource::from_bytes("x", DType::F32, {2, 4, 8, 8}, test::bytes_of(x)));
  write_safetensors(dir_.file("partial.safetensors"), std::move(partial), {});
  expect_error("forward -m " + model + " --inputs " + dir_.file("partial.safetensors") + " -o " + dir_.file("o2.safetensors"),
               "no tensor 't'");
  expect_error("forward -m " + dir_.file("partial.safetensors") + " --inputs " + dir_.file("in.safetensors") + " -o " +
                   dir_.file("o2.safetensors"),
               "partial.safetensors: no model family matches (1 tensor: x (1)); tiledraw knows ");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("o2.safetensors")));
}

TEST_F(Cli, GenerateWritesAReproduciblePngThatCarriesItsParameters) {
  const std::string model = test::write_pixel_dit(dir_);
  for (const std::string& sampler : sampler_names()) {
    const std::string args = "generate -m " + model + " --class 1 --steps 4 --seed 7 --sampler " + sampler + " -o ";
    const CommandResult a = run(args + dir_.file("a.png"));
    ASSERT_EQ(a.status, 0) << a.err;
    EXPECT_THAT(a.out, HasSubstr("wrote " + dir_.file("a.png") + "\n1 image of 8 x 8: load "));
    EXPECT_THAT(a.err, HasSubstr("sampling: 4/4"));
    ASSERT_EQ(run(args + dir_.file("b.png")).status, 0);
    EXPECT_EQ(test::read_text(dir_.file("a.png")), test::read_text(dir_.file("b.png"))) << sampler << ": the same seed, the same PNG";
    const std::string png = test::read_text(dir_.file("a.png"));
    EXPECT_THAT(png, HasSubstr(std::string("parameters") + '\0' + "class 1\nSteps: 4, Sampler: " + sampler_label(parse_sampler(sampler)) +
                                   ", CFG scale: 4, Seed: 7, Size: 8x8, Model: pixel-dit.safetensors"));
  }
  ASSERT_EQ(run("generate -q -m " + model + " --steps 4 --sampler dpm++2m --scheduler karras --cfg-scale 1.5 -o " +
                dir_.file("k.png")).status, 0);
  EXPECT_THAT(test::read_text(dir_.file("k.png")),
              HasSubstr("Steps: 4, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 1.5, Seed: 42, Size: 8x8"));
  ASSERT_EQ(run("generate -q -m " + model + " --steps 3 --seed 8 -W 12 -H 8 -b 2 -o " + dir_.file("c.png")).status, 0);
  EXPECT_TRUE(std::filesystem::exists(dir_.file("c-1.png")));
  EXPECT_TRUE(std::filesystem::exists(dir_.file("c-2.png")));
  EXPECT_NE(test::read_text(dir_.file("c-1.png")), test::read_text(dir_.file("c-2.png")));

  expect_error("generate -m " + model + " --class 3 -o " + dir_.file("x.png"), "--class: class 3 is outside 0..2");
  expect_error("generate -m " + model + " -W 7 -o " + dir_.file("x.png"), "7 x 8 is not a positive multiple of 2 (the patch size)");
  expect_error("generate -m " + model + " --sampler plms -o " + dir_.file("x.png"), "--sampler: unknown sampler 'plms' (one of euler, ");
  expect_error("generate -m " + model + " --scheduler beta -o " + dir_.file("x.png"), "--scheduler: unknown scheduler 'beta'");
  expect_error("generate -m " + std::string(TILEDRAW_SOURCE_DIR) + "/examples/tiny-dit-f16.safetensors -o " +
                   dir_.file("x.png"),
               "4-channel latents, not pixels; decoding them needs --vae VAE.safetensors");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("x.png")));
}

TEST_F(Cli, GenerateTakesClassNamesAndWritesGrids) {
  const std::string model = test::write_pixel_dit(dir_);
  {
    std::ofstream labels(dir_.file("labels.txt"));
    labels << "tabby cat\ngolden_retriever\nbarn owl\n";
  }
  const std::string base = "generate -q -m " + model + " --steps 2 --seed 3 --labels " + dir_.file("labels.txt");
  ASSERT_EQ(run(base + " --class-name Golden-Retriever -o " + dir_.file("by-name.png")).status, 0);
  ASSERT_EQ(run(base + " --class 1 -o " + dir_.file("by-id.png")).status, 0);
  EXPECT_EQ(test::read_text(dir_.file("by-name.png")), test::read_text(dir_.file("by-id.png"))) << "a name is its class id";
  EXPECT_THAT(test::read_text(dir_.file("by-name.png")), HasSubstr("class 1 (golden_retriever)"));

  // Three classes, two images each: a grid of 3 rows of 2 images of 8 x 8, 2 pixels apart.
  ASSERT_EQ(run(base + " --class all -b 2 --grid -o " + dir_.file("grid.png")).status, 0);
  const std::string grid = test::read_text(dir_.file("grid.png"));
  const auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(grid[at])) << 24) | (uint32_t(uint8_t(grid[at + 1])) << 16) |
           (uint32_t(uint8_t(grid[at + 2])) << 8) | uint32_t(uint8_t(grid[at + 3]));
  };
  EXPECT_EQ(be32(16), 2u * 8 + 2) << "width";
  EXPECT_EQ(be32(20), 3u * 8 + 2 * 2) << "height";
  EXPECT_THAT(grid, HasSubstr("class 0 (tabby cat), 1 (golden_retriever), 2 (barn owl)"));

  expect_error(base + " --class-name dog -o " + dir_.file("x.png"), "--class-name: no class named 'dog'");
  expect_error("generate -m " + model + " --class-name cat -o " + dir_.file("x.png"),
               "--class-name: 'cat' is not a class id, and the model has no class names");
  expect_error("generate -m " + model + " --vae " + model + " -o " + dir_.file("x.png"),
               "pixel-dit.safetensors: holds no AutoencoderKL decoder (diffusers or original layout)");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("x.png")));
}

TEST_F(Cli, SeveralPromptsEachDrawWhatTheyWouldAloneARowEachInAGrid) {
  const std::string base = "generate -q -m " + std::string(TILEDRAW_SOURCE_DIR) +
                           "/models/fashion-sd-8bit-s.safetensors --steps 3 --seed 5";
  ASSERT_EQ(run(base + " -p 'a white sneaker' -p 'dark jeans' -o " + dir_.file("both.png")).status, 0);
  ASSERT_EQ(run(base + " -p 'a white sneaker' -o " + dir_.file("sneaker.png")).status, 0);
  ASSERT_EQ(run(base + " -p 'dark jeans' -o " + dir_.file("jeans.png")).status, 0);
  const auto pixels = [](const std::string& path) { return read_png(path, 3).pixels; };
  EXPECT_EQ(pixels(dir_.file("both-1.png")), pixels(dir_.file("sneaker.png"))) << "the first prompt, the same seed";
  EXPECT_EQ(pixels(dir_.file("both-2.png")), pixels(dir_.file("jeans.png"))) << "the second prompt, the same seed";
  EXPECT_NE(pixels(dir_.file("sneaker.png")), pixels(dir_.file("jeans.png")));

  ASSERT_EQ(run(base + " -p 'a white sneaker' -p 'dark jeans' -b 4 --grid -o " + dir_.file("grid.png")).status, 0);
  const Image grid = read_png(dir_.file("grid.png"), 3);
  EXPECT_EQ(grid.width, 4 * 32 + 3 * 2) << "a column per image of a prompt";
  EXPECT_EQ(grid.height, 2 * (20 + 32) + 2) << "a row per prompt, each under a 20-pixel band with its prompt";
  ASSERT_EQ(run(base + " -p 'a white sneaker' -b 4 -o " + dir_.file("sneakers.png")).status, 0);
  for (int64_t column = 0; column < 4; ++column) {
    const Image sneaker = read_png(dir_.file("sneakers-" + std::to_string(column + 1) + ".png"), 3);
    for (int64_t y = 0; y < 32; ++y) {
      const auto row = grid.pixels.begin() + ((20 + y) * grid.width + column * 34) * 3;
      ASSERT_TRUE(std::equal(row, row + 32 * 3, sneaker.pixels.begin() + y * 32 * 3)) << "image " << column << " row " << y;
    }
  }
  const auto band_has_ink = [&](int64_t top) {
    return std::any_of(grid.pixels.begin() + top * grid.width * 3, grid.pixels.begin() + (top + 20) * grid.width * 3,
                       [](uint8_t v) { return v > 0; });
  };
  EXPECT_TRUE(band_has_ink(0));
  EXPECT_TRUE(band_has_ink(20 + 32 + 2));
  expect_error(base + " -p a -p b --output-latents " + dir_.file("x.safetensors") + " -o " + dir_.file("x.png"),
               "--output-latents: takes one prompt, not several");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("x.png")));
}

TEST_F(Cli, GenerateStopsOnNanNamingTheStepAndTheOpAndRefusesWorkOverTheMemoryLimit) {
  const std::string poisoned = test::write_pixel_dit(dir_, "blocks.0.mlp.fc2.weight");
  expect_error("generate -m " + poisoned + " --steps 4 -o " + dir_.file("x.png"),
               "step 1/4 (timestep 999): NaN or Inf in the output, first made by linear (op ");
  EXPECT_THAT(run("generate -m " + poisoned + " --steps 4 -o " + dir_.file("x.png")).err, HasSubstr("'blocks.0.mlp.fc2')"));

  const std::string model = test::write_pixel_dit(dir_);
  expect_error("--max-memory 8M generate -m " + model + " -W 4096 -H 4096 -o " + dir_.file("x.png"),
               "the latents and pictures of 1 image of 4096 x 4096 would take 656.0 MiB beyond the ");
  expect_error("--max-memory 8M generate -m " + model + " -W 4096 -H 4096 -o " + dir_.file("x.png"),
               "already in use, over the memory limit of 8.0 MiB (--max-memory)");
  expect_error("generate -m " + model + " -W 16384 -H 16384 -b 256 -o " + dir_.file("x.png"), "over the memory limit of");
  expect_error("generate --max-memory 12Q -m " + model + " -o " + dir_.file("x.png"), "--max-memory: '12Q' is not a memory size");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("x.png")));
  EXPECT_EQ(run("generate -q --max-memory 64M -m " + model + " -o " + dir_.file("x.png")).status, 0) << "within the limit";
}

// -128 is outside 8-bit S; a file holding it is refused by file, tensor and row.
TEST_F(Cli, A8BitSWeightHoldingMinus128IsRefusedByName) {
  const std::string converted = dir_.file("converted.safetensors");
  ASSERT_EQ(run("convert -q " + test::write_pixel_dit(dir_) + " " + converted).status, 0);
  const TensorInfo fc1 = *SafetensorsFile::open(converted).find("blocks.0.mlp.fc1.weight");
  ASSERT_EQ(fc1.dtype, DType::I8);
  std::fstream file(converted, std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(static_cast<std::streamoff>(fc1.file_offset + 3 * 32 + 5));  // row 3 of [128, 32]
  file.put(static_cast<char>(0x80));
  file.close();
  expect_error("generate -m " + converted + " -o " + dir_.file("x.png"),
               converted + ": 'blocks.0.mlp.fc1.weight': 8-bit S weight holds -128 at row 3; values must be in [-127, 127]");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("x.png")));
}

// A PNG's text is UTF-8, a file name need not be: bytes that are not UTF-8 become U+FFFD.
TEST_F(Cli, GenerateRecordsAFileNameThatIsNotUtf8) {
  const std::string latin1 = dir_.file("pixel-dit-\xE9t\xE9.safetensors");
  std::filesystem::rename(test::write_pixel_dit(dir_), latin1);
  const CommandResult r = run("generate -q --steps 2 -m '" + latin1 + "' -o " + dir_.file("x.png"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(test::read_text(dir_.file("x.png")), HasSubstr("Model: pixel-dit-\uFFFDt\uFFFD.safetensors"));
}

// A prompt's <lora:NAME:TE:UNET> tags find their files in --lora-dir: the
// image is the one --lora FILE:TE:UNET draws from the prompt without the
// tag, and the PNG keeps the prompt as written.
TEST_F(Cli, GenerateFindsThePromptsLoraTagsInTheLoraFolder) {
  const std::string folder = dir_.file("loras"), lora = dir_.file("loras/sub/style.safetensors");
  test::write_bundled_model_lora(lora, {{"ss_output_name", "fancy"}});
  const std::string base = "generate -q -m " + std::string(TILEDRAW_SOURCE_DIR) +
                           "/models/fashion-sd-8bit-s.safetensors --steps 3 --seed 5 ";
  const auto pixels = [&](const std::string& flags) {
    const CommandResult r = run(base + flags + " -o " + dir_.file("x.png"));
    EXPECT_EQ(r.status, 0) << flags << ": " << r.err;
    return read_png(dir_.file("x.png"), 3).pixels;
  };
  const std::vector<uint8_t> none = pixels("-p 'a white sneaker'");
  const std::vector<uint8_t> flagged = pixels("-p 'a white sneaker' --lora " + lora + ":0.8");
  ASSERT_NE(flagged, none) << "the adapter must change the picture for this test to mean anything";
  EXPECT_EQ(pixels("-p 'a white sneaker <lora:style:0.8>' --lora-dir " + folder), flagged);
  EXPECT_THAT(test::read_text(dir_.file("x.png")), HasSubstr(std::string("parameters") + '\0' + "a white sneaker <lora:style:0.8>\nSteps: 3"));
  const std::vector<uint8_t> split = pixels("-p 'a white sneaker' --lora " + lora + ":0.5:-0.5");
  EXPECT_NE(split, flagged);
  EXPECT_EQ(pixels("-p '<lora:fancy:te=0.5:unet=-0.5>a white sneaker' --lora-dir " + folder), split) << "by its alias";

  expect_error(base + "-p 'a <lora:nope:1>' --lora-dir " + folder + " -o " + dir_.file("y.png"),
               "--prompt: <lora:nope:1>: no adapter named 'nope' in the LoRA folder " + folder);
  expect_error(base + "-p 'a <lora:style>' -p 'b <lora:style:1:2:3:4>' --lora-dir " + folder + " -o " + dir_.file("y.png"),
               "--prompt: <lora:style:1:2:3:4>: a fourth value (DyLoRA's rank cut) is not supported");
  expect_error(base + "-p 'a <lora:style:0.8>' -o " + dir_.file("y.png"), "--prompt: <lora:style:0.8>: no LoRA folder is set");
  expect_error(base + "-p a --lora-dir " + dir_.file("none") + " -o " + dir_.file("y.png"),
               "the LoRA folder " + dir_.file("none") + " does not exist");
  expect_error(base + "-p a --lora " + lora + ":1:inf -o " + dir_.file("y.png"), "--lora: strength 'inf' is not a finite number");
  EXPECT_FALSE(std::filesystem::exists(dir_.file("y.png")));
}

// Ctrl-C during sampling: the run stops within a step, says so, exits with
// 128 + SIGINT and writes nothing.
TEST_F(Cli, InterruptedGenerateStopsWithinAStepAndLeavesNoOutput) {
  int err[2];
  ASSERT_EQ(pipe(err), 0);
  const std::string out = dir_.file("out.png");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    dup2(err[1], 2);
    execl(TILEDRAW_BINARY, TILEDRAW_BINARY, "generate", "--steps", "10000", "--sampler", "euler", "-o", out.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(err[1]);
  std::string progress;
  char buffer[256];
  for (ssize_t n; progress.find("sampling") == std::string::npos && (n = read(err[0], buffer, sizeof buffer)) > 0;) {
    progress.append(buffer, static_cast<size_t>(n));
  }
  ASSERT_THAT(progress, HasSubstr("sampling")) << "the run must be sampling when interrupted";
  const auto interrupted = std::chrono::steady_clock::now();
  kill(child, SIGINT);
  for (ssize_t n; (n = read(err[0], buffer, sizeof buffer)) > 0;) progress.append(buffer, static_cast<size_t>(n));
  int status = 0;
  waitpid(child, &status, 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - interrupted).count();
  close(err[0]);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 130);
  EXPECT_THAT(progress, ::testing::ContainsRegex("tiledraw: interrupted \\(cancelled at step [0-9]+/10000\\); nothing was written"));
  EXPECT_LT(seconds, 2.0) << "a step of the bundled model takes about a millisecond";
  EXPECT_EQ(dir_.entries(), std::vector<std::string>{}) << "no image and no temporary file";
}

TEST_F(Cli, TokenizePrintsTheIdsPerChunkAndWhereTheVocabularyWasFound) {
  test::ScopedEnvironment env;
  env.set("HOME", dir_.file("home"));
  for (const char* name : {"HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "TILEDRAW_TOKENIZER"}) env.set(name, nullptr);
  const std::string vocabulary = TILEDRAW_SOURCE_DIR "/../shared/data/clip/bpe_simple_vocab_16e6.txt.gz";
  const CommandResult r = run("tokenize --tokenizer " + vocabulary + " 'a (photo:1.2) of a cat BREAK [dog]'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "vocabulary  " + vocabulary + "\n"
                   "padding     49407 (SD 1.x)\n"
                   "chunk 1     49406 320 1125 539 320 2368 49407, then 70 x 49407\n"
                   "  weights   2=1.2\n"
                   "chunk 2     49406 1929 49407, then 74 x 49407\n"
                   "  weights   1=0.909091\n");

  const CommandResult j = run("tokenize --json --tokenizer " + vocabulary + " ''");
  ASSERT_EQ(j.status, 0) << j.err;
  const auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["source"], vocabulary);
  EXPECT_EQ(doc["pad_id"], 49407);
  ASSERT_EQ(doc["chunks"].size(), 1u);
  std::vector<int32_t> empty(77, 49407);
  empty[0] = 49406;
  EXPECT_EQ(doc["chunks"][0]["ids"].get<std::vector<int32_t>>(), empty);
  EXPECT_EQ(doc["chunks"][0]["weights"].get<std::vector<float>>(), std::vector<float>(77, 1.0f));

  expect_error("tokenize cat", "no CLIP tokenizer vocabulary found");
  EXPECT_THAT(run("tokenize cat").err, HasSubstr("bpe_simple_vocab_16e6.txt.gz from github.com/openai/CLIP"));
  EXPECT_THAT(run("tokenize cat").err, HasSubstr("or pass --tokenizer PATH"));
  expect_error("tokenize --tokenizer " + dir_.file("none.gz") + " cat", dir_.file("none.gz") + ": cannot open");

  // convert --tokenizer makes the file self-contained: its own vocabulary is found first.
  const std::string converted = dir_.file("converted.safetensors");
  const CommandResult c = run("convert -q --tokenizer " + vocabulary + " " + model() + " " + converted);
  ASSERT_EQ(c.status, 0) << c.err;
  EXPECT_THAT(c.out, HasSubstr("embedded the CLIP tokenizer from " + vocabulary));
  const CommandResult t = run("tokenize -m " + converted + " 'a cat'");
  ASSERT_EQ(t.status, 0) << t.err;
  EXPECT_THAT(t.out, HasSubstr("vocabulary  embedded in " + converted + "\n"));
  EXPECT_THAT(t.out, HasSubstr("chunk 1     49406 320 2368 49407, then 73 x 49407\n"));
  EXPECT_EQ(run("inspect " + converted).status, 0);
}

TEST_F(Cli, AnUnknownIsaLevelIsAnError) {
  const std::string command = "TILEDRAW_ISA=sse9 " + std::string(TILEDRAW_BINARY) + " info >/dev/null 2>" + dir_.file("err");
  const int status = std::system(command.c_str());
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_THAT(test::read_text(dir_.file("err")), HasSubstr("TILEDRAW_ISA: unknown level 'sse9'"));
}

}  // namespace
}  // namespace tiledraw
