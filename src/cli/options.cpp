#include <cmath>
#include <cstdlib>

#include "cli/commands.h"

namespace tiledraw::cli {

GlobalOptions& global_options() {
  static GlobalOptions options;
  return options;
}

std::unique_ptr<Accelerator> selected_accelerator(std::string* why) {
  const std::string& name = global_options().accelerator;
  std::string reason;
  std::unique_ptr<Accelerator> accel = make_accelerator(name.empty() ? "auto" : name, &reason);
  if (!accel) throw Error("--accel " + name + ": cannot run here: " + reason);
  if (why) *why = name.empty() ? reason : "chosen by --accel";
  return accel;
}

Precision precision_flag(const std::string& value, const std::string& flag) {
  return for_flag(flag, [&] { return parse_precision(value); });
}

std::vector<LoraRequest> lora_flags(const std::vector<std::string>& values) {
  std::vector<LoraRequest> loras;
  for (const std::string& value : values) {
    // Strengths after the last one or two colons, where what follows them is
    // a number (a path may hold colons too): the text encoders' first.
    std::string path = value;
    std::vector<double> strengths;
    while (strengths.size() < 2) {
      const size_t colon = path.rfind(':');
      if (colon == std::string::npos) break;
      const std::string strength = path.substr(colon + 1);
      char* end = nullptr;
      const double parsed = std::strtod(strength.c_str(), &end);
      if (strength.empty() || end != strength.c_str() + strength.size()) break;
      if (!std::isfinite(parsed)) throw Error("--lora: strength '" + strength + "' is not a finite number");
      strengths.insert(strengths.begin(), parsed);
      path.resize(colon);
    }
    if (path.empty()) throw Error("--lora: '" + value + "' names no file");
    const double text_strength = strengths.empty() ? 1.0 : strengths.front();
    loras.push_back({path, strengths.size() == 2 ? strengths.back() : text_strength, text_strength});
  }
  return loras;
}

}  // namespace tiledraw::cli
