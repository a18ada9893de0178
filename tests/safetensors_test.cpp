#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "test_util.h"
#include "tiledraw/error.h"
#include "tiledraw/safetensors.h"

namespace tiledraw {
namespace {

using test::TempDir;
using ::testing::HasSubstr;

template <typename T>
std::vector<T> read_as(const SafetensorsFile& file, const std::string& name) {
  const auto data = file.data(file.at(name));
  std::vector<T> out(data.size() / sizeof(T));
  std::memcpy(out.data(), data.data(), data.size());
  return out;
}

TEST(Safetensors, RoundTripsEveryDtypeWithShapesAndMetadata) {
  TempDir dir;
  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};
  const std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x7bff, 0x0001};
  const std::vector<uint16_t> bf16 = {0x3f80, 0xc0a0};
  const std::vector<int8_t> i8 = {-127, 0, 5, 127, -128};
  const std::vector<int32_t> i32 = {-1, 2147483647, -2147483647 - 1};
  const std::vector<int64_t> i64 = {int64_t{1} << 40, -3};
  const std::vector<double> f64 = {3.141592653589793};
  const std::vector<uint8_t> u8 = {0, 255, 1};
  const std::vector<uint8_t> boolean = {1, 0};
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "h\u00e9llo \"quoted\""}};
  std::vector<TensorSource> tensors;
  tensors.push_back(TensorSource::from_bytes("f32", DType::F32, {2, 3}, test::bytes_of(f32)));
  tensors.push_back(TensorSource::from_bytes("f16", DType::F16, {4}, test::bytes_of(f16)));
  tensors.push_back(TensorSource::from_bytes("bf16", DType::BF16, {1, 2}, test::bytes_of(bf16)));
  tensors.push_back(TensorSource::from_bytes("i8", DType::I8, {5}, test::bytes_of(i8)));
  tensors.push_back(TensorSource::from_bytes("i32", DType::I32, {3, 1}, test::bytes_of(i32)));
  tensors.push_back(TensorSource::from_bytes("i64", DType::I64, {2}, test::bytes_of(i64)));
  tensors.push_back(TensorSource::from_bytes("f64", DType::F64, {}, test::bytes_of(f64)));
  tensors.push_back(TensorSource::from_bytes("u8", DType::U8, {3}, test::bytes_of(u8)));
  tensors.push_back(TensorSource::from_bytes("bool", DType::BOOL, {2}, test::bytes_of(boolean)));
  tensors.push_back(TensorSource::from_bytes("empty", DType::F32, {0, 4}, {}));
  write_safetensors(dir.file("all.safetensors"), std::move(tensors), metadata);

  const SafetensorsFile file = SafetensorsFile::open(dir.file("all.safetensors"));
  EXPECT_EQ(file.metadata(), metadata);
  EXPECT_EQ(file.tensors().size(), 10u);
  EXPECT_EQ(file.at("f32").dtype, DType::F32);
  EXPECT_EQ(file.at("f32").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(file.at("f64").shape, std::vector<int64_t>{});
  EXPECT_EQ(file.at("empty").numel(), 0);
  EXPECT_EQ(read_as<float>(file, "f32"), f32);
  EXPECT_EQ(read_as<uint16_t>(file, "f16"), f16);
  EXPECT_EQ(read_as<uint16_t>(file, "bf16"), bf16);
  EXPECT_EQ(read_as<int8_t>(file, "i8"), i8);
  EXPECT_EQ(read_as<int32_t>(file, "i32"), i32);
  EXPECT_EQ(read_as<int64_t>(file, "i64"), i64);
  EXPECT_EQ(read_as<double>(file, "f64"), f64);
  EXPECT_EQ(read_as<uint8_t>(file, "u8"), u8);
  EXPECT_EQ(read_as<uint8_t>(file, "bool"), boolean);
  EXPECT_EQ(file.find("missing"), nullptr);
  EXPECT_THAT([&] { file.at("missing"); }, ::testing::ThrowsMessage<Error>(HasSubstr("no tensor named 'missing'")));
}

TEST(Safetensors, WriterAlignsEveryTensorToItsElementSize) {
  TempDir dir;
  const std::vector<int8_t> odd = {1, 2, 3};
  const std::vector<double> wide = {1.0, 2.0};
  const std::vector<uint16_t> half = {1};
  std::vector<TensorSource> tensors;
  tensors.push_back(TensorSource::from_bytes("a_odd", DType::I8, {3}, test::bytes_of(odd)));
  tensors.push_back(TensorSource::from_bytes("b_half", DType::F16, {1}, test::bytes_of(half)));
  tensors.push_back(TensorSource::from_bytes("c_wide", DType::F64, {2}, test::bytes_of(wide)));
  write_safetensors(dir.file("a.safetensors"), std::move(tensors), {});
  const SafetensorsFile file = SafetensorsFile::open(dir.file("a.safetensors"));
  EXPECT_EQ(file.header_size() % 8, 0u);
  for (const TensorInfo& t : file.tensors()) EXPECT_EQ(t.file_offset % dtype_size(t.dtype), 0u) << t.name;
}

struct MalformedCase {
  const char* name;
  std::string header;
  std::string data;
  const char* message;
};

void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }

class MalformedFile : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedFile, IsRejectedWithItsOwnMessageNamingTheFile) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  test::write_raw_safetensors(path, GetParam().header, GetParam().data);
  try {
    SafetensorsFile::open(path);
    FAIL() << "accepted a malformed file";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path));
    EXPECT_THAT(e.what(), HasSubstr(GetParam().message));
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
}

const std::string kEightBytes(8, '\0');

INSTANTIATE_TEST_SUITE_P(
    Safetensors, MalformedFile,
    ::testing::Values(
        MalformedCase{"NotJson", "{\"a\": {\"dtype\": \"F32\",", kEightBytes, "header is not valid JSON"},
        MalformedCase{"NotAnObject", "[1, 2, 3]", "", "not a safetensors file (header does not start with '{')"},
        MalformedCase{"UnknownDtype", R"({"w":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}})", kEightBytes,
                      "tensor 'w': unknown dtype 'F12'"},
        MalformedCase{"MissingDtype", R"({"w":{"shape":[2],"data_offsets":[0,8]}})", kEightBytes,
                      "tensor 'w': missing \"dtype\""},
        MalformedCase{"NegativeDimension", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", kEightBytes,
                      "tensor 'w': shape [-2] must hold non-negative integers"},
        MalformedCase{"FractionalDimension", R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})",
                      kEightBytes, "must hold non-negative integers"},
        MalformedCase{"HugeShape",
                      R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", kEightBytes,
                      "tensor 'w': shape [4294967296,4294967296] is too large"},
        MalformedCase{"SizeMismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", kEightBytes,
                      "tensor 'w': shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8"},
        MalformedCase{"OffsetsPastEnd", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", kEightBytes,
                      "tensor 'w': data_offsets [0, 16] run past the end of the data (8 bytes)"},
        MalformedCase{"ReversedOffsets", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", kEightBytes,
                      "tensor 'w': data_offsets [8, 0] end before they begin"},
        MalformedCase{"BadOffsetsArray", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", kEightBytes,
                      "tensor 'w': \"data_offsets\" must be two non-negative integers"},
        MalformedCase{"Overlap",
                      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"I8","shape":[4],"data_offsets":[4,8]}})",
                      kEightBytes, "tensors 'a' and 'b' overlap"},
        MalformedCase{"DuplicateName",
                      R"({"a":{"dtype":"I8","shape":[4],"data_offsets":[0,4]},)"
                      R"("a":{"dtype":"I8","shape":[4],"data_offsets":[4,8]}})",
                      kEightBytes, "tensor 'a' appears twice"},
        MalformedCase{"MetadataNotStrings", R"({"__metadata__":{"steps":50}})", "",
                      "__metadata__ value of 'steps' is a JSON number, expected a string"},
        MalformedCase{"EntryNotObject", R"({"w":[1,2]})", "", "tensor 'w': entry is a JSON array"},
        MalformedCase{"EmptyName", R"({"":{"dtype":"I8","shape":[0],"data_offsets":[0,0]}})", "",
                      "a tensor has an empty name"},
        MalformedCase{"InvalidUtf8", "{\"w\xff\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[0,0]}}", "",
                      "header is not valid JSON"}),
    [](const ::testing::TestParamInfo<MalformedCase>& info) { return std::string(info.param.name); });

void expect_open_error(const std::string& path, const std::string& message) {
  try {
    SafetensorsFile::open(path);
    FAIL() << "accepted " << path;
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path));
    EXPECT_THAT(e.what(), HasSubstr(message));
  }
}

TEST(Safetensors, RejectsFilesThatAreNotSafetensorsAtAll) {
  TempDir dir;
  expect_open_error(dir.file("missing.safetensors"), "cannot open: No such file or directory");
  expect_open_error(dir.path().string(), "not a regular file");
  std::ofstream(dir.file("short")) << "abc";
  expect_open_error(dir.file("short"), "3 bytes, too short for the 8-byte header length");
  std::ofstream(dir.file("text.png")) << "\x89PNG\r\n\x1a\n and the rest of an image";
  expect_open_error(dir.file("text.png"), "exceeds the limit of");
  test::write_raw_safetensors(dir.file("truncated"), "{}", "", 4096);
  expect_open_error(dir.file("truncated"), "header length 4096 runs past the end of the file");
}

TEST(Safetensors, AcceptsTheHeaderPaddingAndHolesOtherWritersLeave) {
  TempDir dir;
  const std::string path = dir.file("padded.safetensors");
  test::write_raw_safetensors(path, R"({"w":{"dtype":"I8","shape":[2],"data_offsets":[4,6]}}     )",
                              std::string("\0\0\0\0\x05\x07", 6));
  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(read_as<int8_t>(file, "w"), (std::vector<int8_t>{5, 7}));
}

std::vector<TensorSource> one_tensor(std::function<void(std::span<std::byte>)> fill) {
  std::vector<TensorSource> tensors;
  tensors.push_back({"w", DType::F32, {1024, 1024}, std::move(fill)});
  return tensors;
}

TEST(SafetensorsWriter, AFailedWriteLeavesNoFileAtAll) {
  TempDir dir;
  const std::string path = dir.file("out.safetensors");
  EXPECT_THROW(write_safetensors(path, one_tensor([](std::span<std::byte>) { throw Error("source went away"); }), {}),
               Error);
  EXPECT_TRUE(dir.entries().empty());
}

TEST(SafetensorsWriter, AFailedWriteKeepsThePreviousFile) {
  TempDir dir;
  const std::string path = dir.file("out.safetensors");
  write_safetensors(path, one_tensor([](std::span<std::byte> out) { std::memset(out.data(), 0, out.size()); }), {});
  const auto size = std::filesystem::file_size(path);
  EXPECT_THROW(write_safetensors(path, one_tensor([](std::span<std::byte>) { throw Error("fail"); }), {}), Error);
  EXPECT_EQ(std::filesystem::file_size(path), size);
  EXPECT_NO_THROW(SafetensorsFile::open(path));
  EXPECT_EQ(dir.entries().size(), 1u);
}

TEST(SafetensorsWriter, RejectsDuplicateNamesAndMissingFolders) {
  TempDir dir;
  std::vector<TensorSource> twice;
  twice.push_back({"w", DType::I8, {1}, {}});
  twice.push_back({"w", DType::I8, {1}, {}});
  EXPECT_THAT([&] { write_safetensors(dir.file("a"), std::move(twice), {}); },
              ::testing::ThrowsMessage<Error>(HasSubstr("tensor 'w' given twice")));
  EXPECT_THAT([&] { write_safetensors(dir.file("no/such/folder/a"), {}, {}); },
              ::testing::ThrowsMessage<Error>(HasSubstr("cannot create a file there")));
  EXPECT_TRUE(dir.entries().empty());
}

// Starts a child that writes a file and stops inside the write, then sends it `sig`.
void interrupt_a_write(const std::string& path, int sig) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    remove_partial_files_on_interrupt();
    write_safetensors(path, one_tensor([&](std::span<std::byte>) {
                        const char byte = 1;
                        if (write(ready[1], &byte, 1) != 1) _exit(3);
                        pause();
                      }),
                      {});
    _exit(0);
  }
  char byte = 0;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);
  kill(child, sig);
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig);
  close(ready[0]);
  close(ready[1]);
}

TEST(SafetensorsWriter, InterruptedWriteLeavesNoFinalFile) {
  TempDir dir;
  interrupt_a_write(dir.file("out.safetensors"), SIGINT);
  EXPECT_TRUE(dir.entries().empty()) << "neither the final file nor its temporary one may remain";
  interrupt_a_write(dir.file("out.safetensors"), SIGKILL);
  EXPECT_FALSE(std::filesystem::exists(dir.file("out.safetensors")));  // SIGKILL cannot clean up its temporary file
}

}  // namespace
}  // namespace tiledraw
