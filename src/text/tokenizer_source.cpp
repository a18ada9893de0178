#include "text/tokenizer_source.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

namespace tiledraw::text {
namespace {

namespace fs = std::filesystem;

constexpr const char* kOpenAiFileName = "bpe_simple_vocab_16e6.txt.gz";
// The largest vocabulary file read (decompressed): OpenAI's is 1.7 MB.
constexpr size_t kMaxVocabularyBytes = 64 << 20;

std::string too_large(const std::string& path) {
  return path + ": larger than " + std::to_string(kMaxVocabularyBytes >> 20) + " MiB, not a CLIP vocabulary";
}

// The file's text, or its first `max_lines` lines; gzip data is decompressed
// (zlib reads other files as they are).
std::string read_file(const std::string& path, size_t max_lines = SIZE_MAX) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::unique_ptr<gzFile_s, int (*)(gzFile)> closer(file, gzclose);
  std::string text;
  char buffer[1 << 16];
  int n = 0;
  size_t lines = 0;
  while ((n = gzread(file, buffer, sizeof buffer)) > 0) {
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxVocabularyBytes) throw Error(too_large(path));
    lines += static_cast<size_t>(std::count(buffer, buffer + n, '\n'));
    if (lines >= max_lines) return text;
  }
  if (n < 0) {
    int code = 0;
    throw Error(path + ": cannot read: " + gzerror(file, &code));
  }
  return text;
}

bool starts_with_gzip_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[2] = {};
  return in.read(magic, 2) && static_cast<unsigned char>(magic[0]) == 0x1F && static_cast<unsigned char>(magic[1]) == 0x8B;
}

bool is_file(const fs::path& path) {
  std::error_code ignored;
  return fs::is_regular_file(path, ignored);
}

bool is_folder(const fs::path& path) {
  std::error_code ignored;
  return fs::is_directory(path, ignored);
}

FoundTokenizer load_hugging_face(const fs::path& folder) {
  const std::string vocab = (folder / "vocab.json").string(), merges = (folder / "merges.txt").string();
  for (const std::string& path : {vocab, merges}) {
    if (!is_file(path)) throw Error(path + ": not found; Hugging Face's tokenizer is vocab.json and merges.txt side by side");
  }
  return {ClipTokenizer::from_hugging_face(read_file(vocab), read_file(merges), vocab, merges),
          vocab + " + merges.txt"};
}

// OpenAI's file holds five times the merges CLIP uses: only those are decompressed.
FoundTokenizer load_openai(const std::string& path) {
  return {ClipTokenizer::from_openai_merges(read_file(path, kClipMergeCount + 1), path), path};
}

// The vocabulary a folder holds itself, if any.
std::optional<FoundTokenizer> load_from_folder(const fs::path& folder) {
  if (is_file(folder / "vocab.json") && is_file(folder / "merges.txt")) return load_hugging_face(folder);
  if (is_file(folder / kOpenAiFileName)) return load_openai((folder / kOpenAiFileName).string());
  return std::nullopt;
}

std::optional<FoundTokenizer> load_from_folders(const std::vector<fs::path>& folders, const std::string& note) {
  for (const fs::path& folder : folders) {
    if (std::optional<FoundTokenizer> found = load_from_folder(folder)) {
      found->source += " (" + note + ")";
      return found;
    }
  }
  return std::nullopt;
}

// OpenAI's merges as text: its first line names the format.
bool starts_like_openai_merges(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string first_line;
  std::getline(in, first_line);
  return first_line.find("#version") != std::string::npos;
}

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

fs::path hugging_face_hub() {
  if (const std::string hub = environment("HF_HUB_CACHE"); !hub.empty()) return hub;
  if (const std::string home = environment("HF_HOME"); !home.empty()) return fs::path(home) / "hub";
  if (const std::string cache = environment("XDG_CACHE_HOME"); !cache.empty()) return fs::path(cache) / "huggingface" / "hub";
  return fs::path(environment("HOME")) / ".cache" / "huggingface" / "hub";
}

const char* hugging_face_repository(ClipKind kind) {
  return kind == ClipKind::OpenClipVitH14 ? "laion/CLIP-ViT-H-14-laion2B-s32B-b79K" : "openai/clip-vit-large-patch14";
}

// The snapshots of a repository in the cache, the one refs/main names first.
std::vector<fs::path> cached_snapshots(ClipKind kind) {
  std::string folder_name = std::string("models--") + hugging_face_repository(kind);  // models--owner--name
  folder_name.replace(folder_name.find('/'), 1, "--");
  const fs::path repository = hugging_face_hub() / folder_name;
  std::vector<fs::path> snapshots;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(repository / "snapshots", error)) snapshots.push_back(entry.path());
  std::sort(snapshots.begin(), snapshots.end());
  std::string main;
  std::getline(std::ifstream(repository / "refs" / "main"), main);
  const auto named = std::find(snapshots.begin(), snapshots.end(), repository / "snapshots" / main);
  if (!main.empty() && named != snapshots.end()) std::rotate(snapshots.begin(), named, named + 1);
  return snapshots;
}

std::string not_found_message(const TokenizerSearch& search, const fs::path& beside) {
  const bool sd2 = search.kind == ClipKind::OpenClipVitH14;
  std::string message = "no CLIP tokenizer vocabulary found (";
  if (!search.checkpoint.empty()) message += search.checkpoint + " embeds none, ";
  message += "TILEDRAW_TOKENIZER is not set, ";
  if (!beside.empty()) message += "none beside the checkpoint in " + beside.string() + ", ";
  message += "none in the Hugging Face cache " + hugging_face_hub().string() + "); get " + kOpenAiFileName +
             " from github.com/openai/CLIP (folder clip/) or vocab.json and merges.txt of huggingface.co/" +
             hugging_face_repository(search.kind) + (sd2 ? " (the same vocabulary)" : "") + ", and ";
  message += beside.empty() ? "set TILEDRAW_TOKENIZER to the file or its folder"
                            : "put them in " + beside.string() + " or set TILEDRAW_TOKENIZER to the file or its folder";
  return message;
}

std::string_view tensor_text(const SafetensorsFile& file, std::string_view name) {
  const TensorInfo& tensor = file.at(name);
  if (tensor.dtype != DType::U8 || tensor.shape.size() != 1) {
    throw Error(file.path() + ": tensor '" + tensor.name + "' must be U8 of rank 1 (an embedded tokenizer's text), not " +
                std::string(dtype_name(tensor.dtype)) + " " + shape_string(tensor.shape));
  }
  const std::span<const std::byte> bytes = file.data(tensor);
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

TensorSource text_tensor(std::string_view name, std::string text) {
  const auto shared = std::make_shared<const std::string>(std::move(text));
  return {std::string(name), DType::U8, {static_cast<int64_t>(shared->size())},
          [shared](std::span<std::byte> out) { std::memcpy(out.data(), shared->data(), shared->size()); }};
}

}  // namespace

std::optional<ClipTokenizer> read_embedded_tokenizer(const SafetensorsFile& file) {
  const bool has_tokens = file.find(kEmbeddedTokensTensor), has_merges = file.find(kEmbeddedMergesTensor);
  if (!has_tokens && !has_merges) return std::nullopt;
  // file.at names the missing one when only one is there.
  const std::string_view tokens = tensor_text(file, kEmbeddedTokensTensor);
  const std::string_view merges = tensor_text(file, kEmbeddedMergesTensor);
  return ClipTokenizer::from_text(tokens, merges, file.path() + ": embedded tokenizer");
}

std::vector<TensorSource> embedded_tokenizer_tensors(const ClipTokenizer& tokenizer) {
  std::vector<TensorSource> tensors;
  tensors.push_back(text_tensor(kEmbeddedTokensTensor, tokenizer.tokens_text()));
  tensors.push_back(text_tensor(kEmbeddedMergesTensor, tokenizer.merges_text()));
  return tensors;
}

FoundTokenizer load_clip_tokenizer(const std::string& path) {
  const fs::path p(path);
  if (is_folder(p)) {
    if (std::optional<FoundTokenizer> found = load_from_folder(p)) return std::move(*found);
    if (std::optional<FoundTokenizer> found = load_from_folder(p / "tokenizer")) return std::move(*found);
    throw Error(path + ": holds neither vocab.json + merges.txt nor " + kOpenAiFileName + " (nor a tokenizer/ folder with them)");
  }
  if (!is_file(p)) throw Error(path + ": cannot open: no such file or folder");
  const std::string name = p.filename().string();
  if (name.ends_with(".json") || name == "merges.txt") return load_hugging_face(p.parent_path().empty() ? "." : p.parent_path());
  if (name.ends_with(".safetensors")) {
    std::optional<ClipTokenizer> embedded = read_embedded_tokenizer(SafetensorsFile::open(path));
    if (!embedded) throw Error(path + ": embeds no tokenizer (no tensors " + std::string(kEmbeddedTokensTensor) + ", " +
                               std::string(kEmbeddedMergesTensor) + ")");
    return {std::move(*embedded), "embedded in " + path};
  }
  if (starts_with_gzip_magic(path) || starts_like_openai_merges(path)) return load_openai(path);
  throw Error(path + ": not a CLIP vocabulary (expected " + kOpenAiFileName +
              ", vocab.json and merges.txt, a folder holding them, or a safetensors file that embeds a tokenizer)");
}

FoundTokenizer find_clip_tokenizer(const TokenizerSearch& search) {
  const fs::path checkpoint(search.checkpoint);
  if (!search.checkpoint.empty() && is_file(checkpoint)) {
    if (std::optional<ClipTokenizer> embedded = read_embedded_tokenizer(SafetensorsFile::open(search.checkpoint))) {
      return {std::move(*embedded), "embedded in " + search.checkpoint};
    }
  }
  if (!search.explicit_path.empty()) return load_clip_tokenizer(search.explicit_path);
  if (const std::string path = environment("TILEDRAW_TOKENIZER"); !path.empty()) {
    try {
      FoundTokenizer found = load_clip_tokenizer(path);
      found.source += " (TILEDRAW_TOKENIZER)";
      return found;
    } catch (const Error& e) {
      throw Error(std::string("TILEDRAW_TOKENIZER: ") + e.what());
    }
  }
  fs::path beside;
  if (!search.checkpoint.empty()) {
    beside = is_folder(checkpoint) ? checkpoint : checkpoint.parent_path();
    if (beside.empty()) beside = ".";
    const std::vector<fs::path> folders = is_folder(checkpoint) ? std::vector<fs::path>{beside / "tokenizer", beside}
                                                                : std::vector<fs::path>{beside, beside / "tokenizer"};
    if (std::optional<FoundTokenizer> found = load_from_folders(folders, "beside the checkpoint")) return std::move(*found);
  }
  if (std::optional<FoundTokenizer> found = load_from_folders(cached_snapshots(search.kind), "Hugging Face cache")) {
    return std::move(*found);
  }
  throw TokenizerNotFound(not_found_message(search, beside));
}

}  // namespace tiledraw::text
