// PNG output, read back with libpng's own reader.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <png.h>

#include <cstdio>

#include "test_util.h"
#include "tiledraw/error.h"
#include "tiledraw/image.h"

namespace tiledraw {
namespace {

struct Decoded {
  int64_t width = 0, height = 0, channels = 0;
  std::vector<uint8_t> pixels;
  std::map<std::string, std::string> text;
};

bool read_png(const std::string& path, Decoded& out) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(f);
    return false;
  }
  png_init_io(png, f);
  png_read_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  out.width = png_get_image_width(png, info);
  out.height = png_get_image_height(png, info);
  out.channels = png_get_channels(png, info);
  png_bytepp rows = png_get_rows(png, info);
  for (int64_t r = 0; r < out.height; ++r) out.pixels.insert(out.pixels.end(), rows[r], rows[r] + out.width * out.channels);
  png_textp texts = nullptr;
  const int count = png_get_text(png, info, &texts, nullptr);
  for (int i = 0; i < count; ++i) out.text[texts[i].key] = std::string(texts[i].text, texts[i].itxt_length ? texts[i].itxt_length : texts[i].text_length);
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(f);
  return true;
}

TEST(Png, WritesPixelsAndParametersThatLibpngReadsBack) {
  test::TempDir dir;
  // Two planes of 3 x 2 in [-1, 1]: -1 -> 0, 0 -> 128 (127.5 rounds to even), 1 -> 255; beyond clamps.
  const std::vector<float> planes = {-1, 0, 1, -2, 2, 0.5f,    // channel 0
                                     1, 1, 1, 1, 1, 1,         // channel 1
                                     -1, -1, -1, -1, -1, -1};  // channel 2
  const Image rgb = image_from_planes(planes.data(), 3, 2, 3);
  EXPECT_EQ(std::vector<uint8_t>(rgb.pixels.begin(), rgb.pixels.begin() + 6), (std::vector<uint8_t>{0, 255, 0, 128, 255, 0}));
  const std::string parameters = "class 207, Steps: 50, Sampler: ddim, CFG scale: 4, Seed: 42, Size: 256x256";
  write_png(dir.file("rgb.png"), rgb, {{"parameters", parameters}, {"note", "caf\u00e9"}});
  Decoded d;
  ASSERT_TRUE(read_png(dir.file("rgb.png"), d));
  EXPECT_EQ(d.width, 3);
  EXPECT_EQ(d.height, 2);
  EXPECT_EQ(d.channels, 3);
  EXPECT_EQ(d.pixels, rgb.pixels);
  EXPECT_EQ(d.text["parameters"], parameters);
  EXPECT_EQ(d.text["note"], "caf\u00e9");

  const Image gray = image_from_planes(planes.data(), 1, 2, 3);
  write_png(dir.file("gray.png"), gray);
  Decoded g;
  ASSERT_TRUE(read_png(dir.file("gray.png"), g));
  EXPECT_EQ(g.channels, 1);
  EXPECT_EQ(g.pixels, (std::vector<uint8_t>{0, 128, 255, 0, 255, 191}));
}

TEST(Png, RefusesImpossibleImagesAndLeavesNoFile) {
  test::TempDir dir;
  Image bad{2, 2, 4, std::vector<uint8_t>(16)};
  EXPECT_THROW(write_png(dir.file("bad.png"), bad), Error);
  const Image ok{1, 1, 1, {7}};
  EXPECT_THAT([&] { write_png(dir.file("missing/x.png"), ok); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("cannot create a file there")));
  EXPECT_TRUE(dir.entries().empty());
}

TEST(ImageResize, LanczosKeepsConstantsAveragesPairsWhenHalvingAndCommutesWithMirroring) {
  const Image flat{5, 3, 3, std::vector<uint8_t>(45, 77)};
  for (const auto& [w, h] : {std::pair{11, 7}, std::pair{2, 1}, std::pair{5, 3}, std::pair{64, 64}}) {
    const Image out = resize_image(flat, w, h);
    EXPECT_EQ(out.width, w);
    EXPECT_EQ(out.height, h);
    EXPECT_EQ(out.pixels, std::vector<uint8_t>(static_cast<size_t>(w * h * 3), 77)) << w << " x " << h;
  }
  // Halving: each output pixel is centred between two inputs, whose weights
  // lanczos3(+-0.25) are equal; the filter, twice as wide, reaches 6 pixels out.
  EXPECT_EQ(resize_image(Image{2, 1, 1, {10, 30}}, 1, 1).pixels, (std::vector<uint8_t>{20}));
  // Mirroring the input mirrors the output, shrinking or growing.
  Image picture{9, 6, 3, std::vector<uint8_t>(9 * 6 * 3)};
  for (size_t i = 0; i < picture.pixels.size(); ++i) picture.pixels[i] = static_cast<uint8_t>((i * 97 + 13) % 251);
  const auto mirrored = [](const Image& image) {
    Image out = image;
    for (int64_t y = 0; y < image.height; ++y) {
      for (int64_t x = 0; x < image.width; ++x) {
        for (int64_t c = 0; c < 3; ++c) {
          out.pixels[static_cast<size_t>((y * image.width + x) * 3 + c)] =
              image.pixels[static_cast<size_t>((y * image.width + image.width - 1 - x) * 3 + c)];
        }
      }
    }
    return out;
  };
  for (const auto& [w, h] : {std::pair{4, 3}, std::pair{20, 13}}) {
    EXPECT_EQ(resize_image(mirrored(picture), w, h).pixels, mirrored(resize_image(picture, w, h)).pixels);
  }
  const Image step{8, 1, 1, {0, 0, 0, 0, 200, 200, 200, 200}};
  EXPECT_THROW(resize_image(step, 0, 4), Error);
}

}  // namespace
}  // namespace tiledraw
