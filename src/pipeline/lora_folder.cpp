#include "pipeline/lora_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "tiledraw/error.h"
#include "tiledraw/safetensors.h"

namespace tiledraw::pipeline {
namespace {

namespace fs = std::filesystem;

bool is_safetensors(const fs::path& file) {
  const std::string extension = file.extension().string();
  return std::equal(extension.begin(), extension.end(), std::string_view(".safetensors").begin(),
                    std::string_view(".safetensors").end(),
                    [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
}

LoraFolderEntry read_entry(const fs::path& file) {
  LoraFolderEntry entry{file.stem().string(), "", file.string(), {}};
  try {
    entry.metadata = SafetensorsFile::open(entry.path).metadata();  // the header; tensors stay unread
  } catch (const std::exception&) {
    // Listed by its name all the same: using it reports what is wrong with it.
  }
  const auto alias = entry.metadata.find("ss_output_name");
  entry.alias = alias != entry.metadata.end() ? alias->second : entry.name;
  return entry;
}

// Every .safetensors file under `folder`, following links to folders (each
// folder once, so a link back up ends) and leaving hidden folders out, as A1111 lists them.
std::vector<LoraFolderEntry> read_folder(const std::string& folder) {
  std::vector<LoraFolderEntry> entries;
  try {
    std::set<fs::path> visited = {fs::canonical(folder)};
    for (auto it = fs::recursive_directory_iterator(
             folder, fs::directory_options::follow_directory_symlink | fs::directory_options::skip_permission_denied);
         it != fs::recursive_directory_iterator(); ++it) {
      std::error_code error;
      if (it->is_directory(error)) {
        const bool hidden = it->path().filename().string().starts_with(".");
        if (hidden || !visited.insert(fs::canonical(it->path(), error)).second) it.disable_recursion_pending();
      } else if (it->is_regular_file(error) && is_safetensors(it->path())) {
        entries.push_back(read_entry(it->path()));
      }
    }
  } catch (const fs::filesystem_error& e) {
    throw Error("the LoRA folder " + folder + " cannot be read: " + e.code().message());
  }
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  return entries;
}

std::string paths_of(const std::vector<const LoraFolderEntry*>& entries) {
  std::string text;
  for (const LoraFolderEntry* entry : entries) text += (text.empty() ? "" : ", ") + entry->path;
  return text;
}

}  // namespace

LoraFolder::LoraFolder(std::string path) : path_(std::move(path)) {
  std::error_code error;
  if (!fs::is_directory(path_, error)) {
    throw Error("the LoRA folder " + path_ + (fs::exists(path_, error) ? " is not a folder" : " does not exist"));
  }
}

const std::vector<LoraFolderEntry>& LoraFolder::listing() const {
  if (!entries_) entries_ = read_folder(path_);
  return *entries_;
}

std::vector<LoraFolderEntry> LoraFolder::entries() const {
  std::lock_guard lock(mutex_);
  return listing();
}

void LoraFolder::refresh() {
  std::lock_guard lock(mutex_);
  entries_.reset();
}

std::string LoraFolder::find(const LoraTag& tag) const {
  std::lock_guard lock(mutex_);
  const auto matching = [&](std::string LoraFolderEntry::*field) {
    std::vector<const LoraFolderEntry*> found;
    for (const LoraFolderEntry& entry : listing()) {
      if (entry.*field == tag.name) found.push_back(&entry);
    }
    return found;
  };
  if (const auto by_name = matching(&LoraFolderEntry::name); !by_name.empty()) {
    if (by_name.size() == 1) return by_name.front()->path;
    throw Error(tag.text + ": " + std::to_string(by_name.size()) + " files of the LoRA folder " + path_ + " are named '" +
                tag.name + "': " + paths_of(by_name));
  }
  const auto by_alias = matching(&LoraFolderEntry::alias);
  if (by_alias.size() == 1) return by_alias.front()->path;
  if (by_alias.empty()) {
    throw Error(tag.text + ": no adapter named '" + tag.name + "' in the LoRA folder " + path_ +
                " (by file name without .safetensors, or by ss_output_name)");
  }
  throw Error(tag.text + ": '" + tag.name + "' is the ss_output_name of " + std::to_string(by_alias.size()) +
              " files of the LoRA folder (" + paths_of(by_alias) + "); name one by its file name");
}

}  // namespace tiledraw::pipeline
