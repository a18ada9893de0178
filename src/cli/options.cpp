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

}  // namespace tiledraw::cli
