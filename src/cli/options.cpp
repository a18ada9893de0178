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
    LoraRequest lora{value};
    // A strength after the last colon, when what follows it is a number (a
    // path may hold colons too).
    const size_t colon = value.rfind(':');
    if (colon != std::string::npos) {
      const std::string strength = value.substr(colon + 1);
      char* end = nullptr;
      const double parsed = std::strtod(strength.c_str(), &end);
      if (!strength.empty() && end == strength.c_str() + strength.size()) {
        if (!std::isfinite(parsed)) throw Error("--lora: strength '" + strength + "' is not a finite number");
        lora = {value.substr(0, colon), parsed, parsed};
      }
    }
    if (lora.path.empty()) throw Error("--lora: '" + value + "' names no file");
    loras.push_back(std::move(lora));
  }
  return loras;
}

}  // namespace tiledraw::cli
