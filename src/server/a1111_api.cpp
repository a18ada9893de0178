#include "server/a1111_api.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <limits>
#include <memory>
#include <set>

#include "tiledraw/tiledraw.h"

namespace tiledraw::server {
namespace {

using nlohmann::json;

// A1111 names schedules in lower case ("karras", "sgm_uniform"), as tiledraw
// does, and has two more: "automatic" is tiledraw's default, and "uniform",
// k-diffusion's default discrete schedule, is tiledraw's `normal`.
struct ScheduleAlias {
  const char* name;
  Scheduler scheduler;
};
constexpr ScheduleAlias kScheduleAliases[] = {{"automatic", Scheduler::Default}, {"uniform", Scheduler::Normal}};

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::vector<Sampler> all_samplers() {
  std::vector<Sampler> samplers;
  for (const std::string& name : sampler_names()) samplers.push_back(parse_sampler(name));
  return samplers;
}

std::vector<Scheduler> all_schedulers() {
  std::vector<Scheduler> schedulers;
  for (const std::string& name : scheduler_names()) schedulers.push_back(parse_scheduler(name));
  return schedulers;
}

// What A1111 calls a schedule in requests and answers.
const char* a1111_scheduler_name(Scheduler s) { return s == Scheduler::Default ? "automatic" : scheduler_name(s); }

std::optional<Sampler> find_sampler(std::string_view label) {
  for (const Sampler s : all_samplers()) {
    if (same_name(label, sampler_label(s)) || same_name(label, sampler_name(s))) return s;
  }
  return std::nullopt;
}

const char* json_type(const json& value) {
  if (value.is_number_integer() || value.is_number_unsigned()) return "an integer";
  if (value.is_number()) return "a number";
  return value.type_name();
}

// The fields of a request body, read by type; a wrong type or value is a 422
// naming the field. Every field read is marked, and the rest are the ignored ones.
class Fields {
 public:
  Fields(const json& body, std::string prefix = "") : body_(body), prefix_(std::move(prefix)) {}

  // A field that is absent or null is unset.
  const json* find(const std::string& name) {
    used_.insert(name);
    const auto it = body_.find(name);
    return it == body_.end() || it->is_null() ? nullptr : &*it;
  }

  [[noreturn]] void refuse(const std::string& name, const std::string& message) const {
    throw ApiError(422, prefix_ + name + ": " + message);
  }

  std::optional<std::string> text(const std::string& name) {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_string()) refuse(name, std::string("expected a string, got ") + json_type(*v));
    return v->get<std::string>();
  }

  std::optional<bool> flag(const std::string& name) {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) refuse(name, std::string("expected true or false, got ") + json_type(*v));
    return v->get<bool>();
  }

  // An integer in [low, high]; a float with an integral value counts (JavaScript sends 20.0).
  std::optional<int64_t> integer(const std::string& name, int64_t low, int64_t high) {
    const json* v = find(name);
    if (!v) return std::nullopt;
    const double d = v->is_number() ? v->get<double>() : NAN;
    if (!v->is_number() || std::floor(d) != d) refuse(name, std::string("expected an integer, got ") + json_type(*v));
    if (d < static_cast<double>(low) || d > static_cast<double>(high)) {
      refuse(name, number_text(*v) + " is outside " + std::to_string(low) + ".." + std::to_string(high));
    }
    return static_cast<int64_t>(d);  // exact: the limits are far inside a double's integers
  }

  std::optional<double> number(const std::string& name, double low, double high) {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_number()) refuse(name, std::string("expected a number, got ") + json_type(*v));
    const double d = v->get<double>();
    if (!(d >= low && d <= high)) refuse(name, number_text(*v) + " is outside " + format_number(low) + ".." + format_number(high));
    return d;
  }

  // Present fields not read, for the response's list of ignored ones.
  std::vector<std::string> unread() const {
    std::vector<std::string> names;
    for (const auto& [name, value] : body_.items()) {
      if (!used_.count(name)) names.push_back(prefix_ + name);
    }
    return names;
  }

 private:
  static std::string number_text(const json& v) { return v.dump(); }
  static std::string format_number(double d) { return json(d).dump(); }

  const json& body_;
  std::string prefix_;
  std::set<std::string> used_;
};

int64_t effective(int64_t value, int64_t model_default) { return value > 0 ? value : model_default; }

// A metadata value as A1111 gives it: a JSON object when it holds one, else the text.
json metadata_value(const std::string& value) {
  if (!value.starts_with("{")) return value;
  // Deeper nesting stays text: writing the answer recurses into it.
  constexpr int kMaxDepth = 32;
  bool too_deep = false;
  const json::parser_callback_t limit_depth = [&](int depth, json::parse_event_t, json&) {
    too_deep = too_deep || depth > kMaxDepth;
    return !too_deep;
  };
  json parsed = json::parse(value, limit_depth, false);
  return parsed.is_object() && !too_deep ? parsed : json(value);
}

}  // namespace

std::string utc_now(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[64];
  return std::string(text, std::strftime(text, sizeof text, format, &utc));
}

std::string model_title(const std::string& path) {
  std::filesystem::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

Sampler parse_sampler_label(std::string_view label, std::optional<Scheduler>* scheduler) {
  if (const std::optional<Sampler> sampler = find_sampler(label)) return *sampler;
  // Before version 1.9, A1111's labels carried the schedule: "DPM++ 2M Karras".
  for (const Scheduler s : all_schedulers()) {
    const std::string suffix = std::string(" ") + scheduler_label(s);
    if (label.size() > suffix.size() && same_name(label.substr(label.size() - suffix.size()), suffix)) {
      if (const std::optional<Sampler> sampler = find_sampler(label.substr(0, label.size() - suffix.size()))) {
        *scheduler = s;
        return *sampler;
      }
    }
  }
  std::string choices;
  for (const Sampler s : all_samplers()) choices += (choices.empty() ? "" : ", ") + std::string(sampler_label(s));
  throw Error("unknown sampler '" + std::string(label) + "' (one of " + choices + ")");
}

Scheduler parse_scheduler_label(std::string_view label) {
  for (const ScheduleAlias& alias : kScheduleAliases) {
    if (same_name(label, alias.name)) return alias.scheduler;
  }
  for (const Scheduler s : all_schedulers()) {
    if (same_name(label, scheduler_name(s)) || same_name(label, scheduler_label(s))) return s;
  }
  std::string choices;
  for (const ScheduleAlias& alias : kScheduleAliases) choices += (choices.empty() ? "" : ", ") + std::string(alias.name);
  for (const Scheduler s : all_schedulers()) {
    if (s != Scheduler::Default) choices += std::string(", ") + scheduler_name(s);
  }
  throw Error("unknown scheduler '" + std::string(label) + "' (one of " + choices + ")");
}

json samplers_json() {
  json list = json::array();
  for (const Sampler s : all_samplers()) list.push_back({{"name", sampler_label(s)}, {"aliases", {sampler_name(s)}}, {"options", json::object()}});
  return list;
}

json schedulers_json() {
  json list = json::array();
  const auto add = [&](const std::string& name, Scheduler s) {
    list.push_back({{"name", name},
                    {"label", scheduler_label(s)},
                    {"aliases", {scheduler_name(s)}},
                    {"default_rho", s == Scheduler::Karras ? 7.0 : -1.0},
                    {"need_inner_model", false}});
  };
  for (const ScheduleAlias& alias : kScheduleAliases) add(alias.name, alias.scheduler);
  for (const Scheduler s : all_schedulers()) {
    if (s != Scheduler::Default) add(scheduler_name(s), s);
  }
  return list;
}

json loras_json(const std::vector<LoraFolderEntry>& entries) {
  json list = json::array();
  for (const LoraFolderEntry& entry : entries) {
    json metadata = json::object();
    for (const auto& [key, value] : entry.metadata) {
      if (key != "ssmd_cover_images") metadata[key] = metadata_value(value);
    }
    list.push_back({{"name", entry.name}, {"alias", entry.alias}, {"path", entry.path}, {"metadata", std::move(metadata)}});
  }
  return list;
}

json parse_json_object(std::string_view body) {
  json root;
  try {
    root = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, "body: not valid JSON (at byte " + std::to_string(e.byte) + ")");
  } catch (const json::out_of_range&) {
    throw ApiError(400, "body: holds a number beyond a double's range");  // 1e400 (found by fuzzing)
  }
  if (!root.is_object()) throw ApiError(400, std::string("body: expected a JSON object, got ") + json_type(root));
  return root;
}

GenerationJobRequest parse_generation_request(std::string_view body, bool img2img, const ServerLimits& limits,
                                              uint64_t random_seed) {
  const json root = parse_json_object(body);
  Fields fields(root);
  GenerationJobRequest job;
  GenerationRequest& r = job.generation;
  r.prompt = fields.text("prompt").value_or("");
  r.negative_prompt = fields.text("negative_prompt").value_or("");
  const int64_t seed = fields.integer("seed", -1, std::numeric_limits<uint32_t>::max()).value_or(-1);
  r.seed = seed < 0 ? random_seed : static_cast<uint64_t>(seed);

  std::optional<Scheduler> scheduler_in_label;
  // sampler_index is the older name of sampler_name.
  for (const char* name : {"sampler_name", "sampler_index"}) {
    if (const auto label = fields.text(name); label && !r.sampler) {
      r.sampler = for_field(name, [&] { return parse_sampler_label(*label, &scheduler_in_label); });
    }
  }
  if (const auto label = fields.text("scheduler")) {
    r.scheduler = for_field("scheduler", [&] { return parse_scheduler_label(*label); });
  }
  if (r.scheduler == Scheduler::Default && scheduler_in_label) r.scheduler = *scheduler_in_label;

  if (const auto steps = fields.integer("steps", 1, limits.max_steps)) r.steps = static_cast<int>(*steps);
  r.cfg_scale = fields.number("cfg_scale", 0.0, 100.0);
  r.width = fields.integer("width", 8, limits.max_side).value_or(0);
  r.height = fields.integer("height", 8, limits.max_side).value_or(0);
  r.batch = fields.integer("batch_size", 1, limits.max_images).value_or(1);
  job.iterations = fields.integer("n_iter", 1, limits.max_images).value_or(1);
  if (r.batch * job.iterations > limits.max_images) {
    fields.refuse("n_iter", std::to_string(r.batch) + " x " + std::to_string(job.iterations) +
                                " images is over this server's limit of " + std::to_string(limits.max_images) + " per request");
  }
  job.task_id = fields.text("force_task_id").value_or("");
  if (job.task_id.size() > 128) fields.refuse("force_task_id", "longer than 128 bytes");
  job.send_images = fields.flag("send_images").value_or(true);
  job.save_images = fields.flag("save_images").value_or(false);

  if (const json* overrides = fields.find("override_settings")) {
    if (!overrides->is_object()) fields.refuse("override_settings", std::string("expected an object, got ") + json_type(*overrides));
    Fields settings(*overrides, "override_settings.");
    job.checkpoint = settings.text("sd_model_checkpoint").value_or("");
    r.clip_skip = static_cast<int>(settings.integer("CLIP_stop_at_last_layers", 1, 12).value_or(0));
    const std::vector<std::string> unread = settings.unread();
    job.ignored.insert(job.ignored.end(), unread.begin(), unread.end());
  }
  // Overrides never outlive the request here, so restoring them afterwards is what always happens.
  fields.flag("override_settings_restore_afterwards");

  if (img2img) {
    const json* images = fields.find("init_images");
    if (!images || !images->is_array() || images->empty()) fields.refuse("init_images", "expected a list of one base64 PNG");
    if (images->size() > 1) job.ignored.push_back("init_images[1:]");
    if (!(*images)[0].is_string()) fields.refuse("init_images", std::string("expected base64 strings, got ") + json_type((*images)[0]));
    std::vector<uint8_t> png;
    try {
      png = base64_decode((*images)[0].get_ref<const std::string&>());
    } catch (const Error& e) {
      fields.refuse("init_images", std::string("[0] is ") + e.what());
    }
    // A PNG's header states its size (bytes 16 to 23, big-endian): refuse a huge
    // one before decoding it, as a small body can inflate to gigabytes.
    const auto be32 = [&](size_t at) {
      return (uint32_t{png[at]} << 24) | (uint32_t{png[at + 1]} << 16) | (uint32_t{png[at + 2]} << 8) | png[at + 3];
    };
    const int64_t largest = 2 * limits.max_side;
    if (png.size() >= 24 && (be32(16) > largest || be32(20) > largest)) {
      fields.refuse("init_images", "[0] is " + std::to_string(be32(16)) + " x " + std::to_string(be32(20)) +
                                       " pixels, over this server's limit of " + std::to_string(largest) + " a side");
    }
    try {
      r.init_image = decode_png(png, 3, "init_images[0]");
    } catch (const Error& e) {
      throw ApiError(422, e.what());
    }
    r.strength = fields.number("denoising_strength", 0.0, 1.0).value_or(0.75);
  }
  const std::vector<std::string> unread = fields.unread();
  job.ignored.insert(job.ignored.begin(), unread.begin(), unread.end());
  return job;
}

json response_parameters(const GenerationJobRequest& job, const ModelInfo& model, bool img2img) {
  const GenerationRequest& r = job.generation;
  json parameters = {
      {"prompt", r.prompt},
      {"negative_prompt", r.negative_prompt},
      {"seed", r.seed},
      {"sampler_name", sampler_label(r.sampler.value_or(model.default_sampler))},
      {"scheduler", a1111_scheduler_name(r.scheduler)},
      {"steps", r.steps.value_or(model.default_steps)},
      {"cfg_scale", r.cfg_scale.value_or(model.default_cfg_scale)},
      {"width", effective(r.width, model.default_width)},
      {"height", effective(r.height, model.default_height)},
      {"batch_size", r.batch},
      {"n_iter", job.iterations},
      {"send_images", job.send_images},
      {"save_images", job.save_images},
      {"override_settings", {{"sd_model_checkpoint", model_title(model.path)}}},
  };
  if (r.clip_skip) parameters["override_settings"]["CLIP_stop_at_last_layers"] = r.clip_skip;
  if (img2img) parameters["denoising_strength"] = r.strength;
  return parameters;
}

json response_info(const GenerationJobRequest& job, const ModelInfo& model, const std::vector<std::string>& infotexts,
                   bool interrupted) {
  const GenerationRequest& r = job.generation;
  const int64_t images = r.batch * job.iterations;
  std::vector<uint64_t> seeds;
  for (int64_t i = 0; i < images; ++i) seeds.push_back(r.seed + static_cast<uint64_t>(i));
  json info = {
      {"prompt", r.prompt},
      {"all_prompts", std::vector<std::string>(static_cast<size_t>(images), r.prompt)},
      {"negative_prompt", r.negative_prompt},
      {"all_negative_prompts", std::vector<std::string>(static_cast<size_t>(images), r.negative_prompt)},
      {"seed", r.seed},
      {"all_seeds", seeds},
      {"subseed", r.seed},
      {"all_subseeds", seeds},
      {"subseed_strength", 0},
      {"width", effective(r.width, model.default_width)},
      {"height", effective(r.height, model.default_height)},
      {"sampler_name", sampler_label(r.sampler.value_or(model.default_sampler))},
      {"scheduler", a1111_scheduler_name(r.scheduler)},
      {"cfg_scale", r.cfg_scale.value_or(model.default_cfg_scale)},
      {"steps", r.steps.value_or(model.default_steps)},
      {"batch_size", r.batch},
      {"n_iter", job.iterations},
      {"sd_model_name", model_title(model.path)},
      {"sd_model_hash", nullptr},
      {"clip_skip", r.clip_skip ? r.clip_skip : 1},
      {"denoising_strength", r.init_image ? json(r.strength) : json(nullptr)},
      {"infotexts", infotexts},
      {"styles", json::array()},
      {"job_timestamp", utc_now("%Y%m%d%H%M%S")},
      {"index_of_first_image", 0},
      {"is_using_inpainting_conditioning", false},
      {"version", std::string("tiledraw ") + version()},
      {"interrupted", interrupted},
      {"ignored_fields", job.ignored},
  };
  return info;
}

std::string base64_encode(std::span<const uint8_t> bytes) {
  std::string text(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(text.data()), bytes.data(), static_cast<int>(bytes.size()));
  text.resize(static_cast<size_t>(length));
  return text;
}

std::vector<uint8_t> base64_decode(std::string_view text) {
  if (text.rfind("data:", 0) == 0) {
    const size_t comma = text.find(',');
    if (comma == std::string_view::npos || text.substr(0, comma).find(";base64") == std::string_view::npos) {
      throw Error("a data URL that is not base64");
    }
    text.remove_prefix(comma + 1);
  }
  if (text.size() > static_cast<size_t>(std::numeric_limits<int>::max())) throw Error("too long");
  std::unique_ptr<EVP_ENCODE_CTX, decltype(&EVP_ENCODE_CTX_free)> context(EVP_ENCODE_CTX_new(), EVP_ENCODE_CTX_free);
  if (!context) throw std::bad_alloc();
  EVP_DecodeInit(context.get());
  std::vector<uint8_t> bytes(text.size() + 3);
  int length = 0, tail = 0;
  if (EVP_DecodeUpdate(context.get(), bytes.data(), &length, reinterpret_cast<const unsigned char*>(text.data()),
                       static_cast<int>(text.size())) < 0 ||
      EVP_DecodeFinal(context.get(), bytes.data() + length, &tail) != 1) {
    throw Error("not valid base64");
  }
  bytes.resize(static_cast<size_t>(length + tail));
  return bytes;
}

}  // namespace tiledraw::server
