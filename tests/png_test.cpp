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

}  // namespace
}  // namespace tiledraw
