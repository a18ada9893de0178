#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/progress.h"
#include "runtime/text.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct InspectArgs {
  std::string path;
  bool json = false;
};

enum class Role { Tensor, Weight8BitS, Scale8BitS };

const char* role_name(Role role) {
  switch (role) {
    case Role::Weight8BitS:
      return "8bit-s-weight";
    case Role::Scale8BitS:
      return "8bit-s-scale";
    case Role::Tensor:
      break;
  }
  return "tensor";
}

// The family detection finds, or why none matched: any safetensors file can be inspected.
void print_family(const std::string& path) {
  try {
    const CheckpointInfo info = inspect_checkpoint(path);
    std::printf("model     %s: %s%s\n", info.family.c_str(), info.description.c_str(),
                info.supported ? "" : " (recognised; tiledraw does not run this family yet)");
    for (const CheckpointInfo::Component& c : info.components) {
      std::printf("          %s: %s%s\n", c.name.c_str(), c.where.c_str(), c.details.empty() ? "" : (", " + c.details).c_str());
    }
  } catch (const Error& e) {
    std::printf("model     none recognised: %s\n", e.what());
  }
}

nlohmann::ordered_json family_json(const std::string& path) {
  try {
    const CheckpointInfo info = inspect_checkpoint(path);
    nlohmann::ordered_json out{{"family", info.family}, {"description", info.description}, {"supported", info.supported}};
    out["components"] = nlohmann::ordered_json::array();
    for (const CheckpointInfo::Component& c : info.components) {
      out["components"].push_back({{"name", c.name}, {"where", c.where}, {"details", c.details}});
    }
    return out;
  } catch (const Error& e) {
    return {{"family", nullptr}, {"error", e.what()}};
  }
}

void run_inspect(const InspectArgs& args) {
  // A diffusers folder: its family and components (inspect a component's file for its tensors).
  if (std::filesystem::is_directory(args.path)) {
    if (args.json) {
      const nlohmann::ordered_json out{{"folder", args.path}, {"model", family_json(args.path)}};
      std::printf("%s\n", out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
    } else {
      std::printf("folder    %s\n", args.path.c_str());
      print_family(args.path);
    }
    return;
  }
  const SafetensorsFile file = SafetensorsFile::open(args.path);
  std::map<std::string, Role> roles;
  const std::vector<Weight8BitS> weights = find_8bit_s_weights(file);
  for (const Weight8BitS& w : weights) {
    roles[w.values->name] = Role::Weight8BitS;
    roles[w.scale->name] = Role::Scale8BitS;
  }
  std::vector<const TensorInfo*> by_name;
  for (const TensorInfo& t : file.tensors()) by_name.push_back(&t);
  std::sort(by_name.begin(), by_name.end(), [](const TensorInfo* a, const TensorInfo* b) { return a->name < b->name; });
  const auto role_of = [&](const TensorInfo& t) {
    const auto it = roles.find(t.name);
    return it == roles.end() ? Role::Tensor : it->second;
  };

  if (args.json) {
    nlohmann::ordered_json out;
    out["file"] = file.path();
    out["bytes"] = file.file_size();
    out["header_bytes"] = file.header_size();
    out["metadata"] = file.metadata();
    out["model"] = family_json(args.path);
    out["tensors"] = nlohmann::ordered_json::array();
    for (const TensorInfo* t : by_name) {
      out["tensors"].push_back({{"name", t->name},
                                {"dtype", dtype_name(t->dtype)},
                                {"shape", t->shape},
                                {"bytes", t->nbytes},
                                {"role", role_name(role_of(*t))}});
    }
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
    return;
  }

  std::printf("file      %s (%s, header %s)\n", file.path().c_str(), human_bytes(file.file_size()).c_str(),
              human_bytes(file.header_size()).c_str());
  const char* label = "metadata";
  for (const auto& [key, value] : file.metadata()) {
    std::printf("%-9s %s = %s\n", label, key.c_str(), value.c_str());
    label = "";
  }
  print_family(args.path);
  std::printf("tensors   %zu, of which %zu are 8-bit S weights\n\n", file.tensors().size(), weights.size());
  std::printf("  %-7s %-22s %-11s %s\n", "dtype", "shape", "bytes", "name");
  std::map<std::string, std::pair<size_t, uint64_t>> by_dtype;
  for (const TensorInfo* tensor : by_name) {
    const TensorInfo& t = *tensor;
    const Role role = role_of(t);
    std::printf("  %-7s %-22s %-11s %s%s\n", std::string(dtype_name(t.dtype)).c_str(), shape_string(t.shape).c_str(),
                human_bytes(t.nbytes).c_str(), t.name.c_str(),
                role == Role::Weight8BitS ? (t.dtype == DType::U8 ? "  [8-bit S, panels]" : "  [8-bit S]")
                                          : (role == Role::Scale8BitS ? "  [8-bit S scale]" : ""));
    auto& [count, bytes] = by_dtype[std::string(dtype_name(t.dtype))];
    ++count;
    bytes += t.nbytes;
  }
  std::printf("\n");
  for (const auto& [dtype, totals] : by_dtype) {
    std::printf("  %-7s %zu tensors, %s\n", dtype.c_str(), totals.first, human_bytes(totals.second).c_str());
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand(
      "inspect", "List the tensors, dtypes, shapes and metadata of a safetensors file, or a diffusers folder's family");
  cmd->add_option("file", args->path, "safetensors file or diffusers folder")->required();
  cmd->add_flag("--json", args->json, "Print JSON instead of a table");
  cmd->callback([args] { run_inspect(*args); });
}

}  // namespace tiledraw::cli
