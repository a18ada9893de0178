#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tiledraw/pipeline.h"

// The A1111 web UI's /sdapi/v1 request and response bodies, mapped onto the
// library's GenerationRequest: field names, sampler and schedule labels, the
// `parameters` text and the `info` JSON its clients read. No HTTP here, so
// that a fuzzer can drive the parser alone.
namespace tiledraw::server {

// A request the server refuses: an HTTP status (4xx) and a one-line message
// that names the field.
class ApiError : public Error {
 public:
  ApiError(int status, const std::string& message) : Error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// Runs `work` with the library's errors turned into a 422 that names `field`
// ("scheduler: unknown scheduler 'x' ..."), as the command line's for_flag does for flags.
template <typename Work>
auto for_field(const std::string& field, Work&& work) {
  try {
    return work();
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {
    throw ApiError(422, field + ": " + e.what());
  }
}

// What one request may ask for, beyond what the model itself allows.
struct ServerLimits {
  int64_t max_side = 2048;  // pixels, width and height
  int max_steps = 150;
  int64_t max_images = 16;  // batch_size x n_iter
};

// A txt2img or img2img request, checked field by field.
struct GenerationJobRequest {
  GenerationRequest generation;  // seed resolved, init image decoded
  int64_t iterations = 1;        // n_iter: batches one after another, seeds continuing
  std::string checkpoint;        // override_settings.sd_model_checkpoint; empty: the current model
  bool send_images = true, save_images = false;
  std::string task_id;  // force_task_id: what /internal/progress is asked about; empty: the server names one
  std::vector<std::string> ignored;  // fields tiledraw does not support, as the client named them
};

// A request body that must be a JSON object; an ApiError 400 names what it is instead.
nlohmann::json parse_json_object(std::string_view body);

// The time now in UTC, as strftime formats it (A1111's job timestamps, file names).
std::string utc_now(const char* format);

// How A1111 names a model: its file or folder name.
std::string model_title(const std::string& path);

// Parses a /sdapi/v1/txt2img (or img2img) body; `random_seed` stands in for
// seed -1. An ApiError (400 for a body that is not a JSON object, 422 for a
// field) names what is wrong.
GenerationJobRequest parse_generation_request(std::string_view body, bool img2img, const ServerLimits& limits,
                                              uint64_t random_seed);

// The sampler an A1111 label ("DPM++ 2M", "Euler a", or the old "DPM++ 2M
// Karras" that also names a schedule) or a tiledraw name ("dpm++2m") means;
// `scheduler` is set when the label names one.
Sampler parse_sampler_label(std::string_view label, std::optional<Scheduler>* scheduler);
Scheduler parse_scheduler_label(std::string_view label);

// GET /sdapi/v1/samplers and /schedulers.
nlohmann::json samplers_json();
nlohmann::json schedulers_json();
// GET /sdapi/v1/loras: each adapter's name, alias, path and metadata, whose
// values that hold a JSON object are given as one (A1111's ss_tag_frequency),
// and without ssmd_cover_images (pictures as text, which A1111 leaves out).
nlohmann::json loras_json(const std::vector<LoraFolderEntry>& entries);

// The response's `parameters` (the request as run, defaults filled in) and
// `info` (A1111's JSON string: seeds, infotexts, and what was ignored).
nlohmann::json response_parameters(const GenerationJobRequest& job, const ModelInfo& model, bool img2img);
nlohmann::json response_info(const GenerationJobRequest& job, const ModelInfo& model,
                             const std::vector<std::string>& infotexts, bool interrupted);

// Base64 (RFC 4648) as A1111 sends images; decoding skips whitespace and an
// optional "data:image/png;base64," prefix, and an Error says what is wrong.
std::string base64_encode(std::span<const uint8_t> bytes);
std::vector<uint8_t> base64_decode(std::string_view text);

}  // namespace tiledraw::server
