#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/lora_prompt.h"
#include "tiledraw/pipeline.h"

// The folder that prompts' <lora:NAME> tags find their adapters in (A1111's
// --lora-dir): every .safetensors file under it, hidden folders left out, by
// its name or its ss_output_name alias. The listing is read when first
// needed, from the files' headers alone, and kept until refresh().
namespace tiledraw::pipeline {

class LoraFolder {
 public:
  // An Error when `path` is not a folder.
  explicit LoraFolder(std::string path);
  LoraFolder(const LoraFolder&) = delete;
  LoraFolder& operator=(const LoraFolder&) = delete;

  const std::string& path() const { return path_; }
  // Every adapter, in path order.
  std::vector<LoraFolderEntry> entries() const;
  // The next use reads the folder again (files added, removed or renamed).
  void refresh();
  // The file a tag names: the one whose name is the tag's, else the one
  // whose alias is. As in A1111, an alias two files share names neither; a
  // name that matches nothing, or several files, is an Error naming the tag
  // and the folder.
  std::string find(const LoraTag& tag) const;

 private:
  const std::vector<LoraFolderEntry>& listing() const;  // with mutex_ held

  std::string path_;
  mutable std::mutex mutex_;
  mutable std::optional<std::vector<LoraFolderEntry>> entries_;
};

}  // namespace tiledraw::pipeline
