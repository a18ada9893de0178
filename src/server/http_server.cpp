#include "server/http_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <omp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>

#include <httplib.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "server/job_queue.h"
#include "server/web_page.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::server {
namespace {

using nlohmann::json;
using httplib::Request;
using httplib::Response;

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

const char* reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 503: return "Service Unavailable";
    default: return status < 500 ? "Client Error" : "Server Error";
  }
}

// A1111 (FastAPI) answers errors as {"error": ..., "detail": ...}.
void send_error(Response& res, int status, const std::string& message) {
  send_json(res, status, {{"error", reason(status)}, {"detail", message}});
}

std::array<unsigned char, 32> sha256(std::string_view text) {
  std::array<unsigned char, 32> digest{};
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &length, EVP_sha256(), nullptr);
  return digest;
}

std::string numeric_host(const sockaddr_storage& address, socklen_t length, int* port) {
  char host[NI_MAXHOST], service[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&address), length, host, sizeof host, service, sizeof service,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "";
  }
  *port = std::atoi(service);
  return host;
}

// cpp-httplib 0.11 does not give a handler its connection, so the socket is
// found by its two addresses: then a handler waiting on a long generation can
// notice that its client went away. -1 when not found.
int connection_socket(const Request& req) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (const dirent* entry = readdir(dir)) {
    const int fd = std::atoi(entry->d_name);
    if (fd <= 2) continue;
    sockaddr_storage peer{}, local{};
    socklen_t peer_length = sizeof peer, local_length = sizeof local;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) != 0) {
      continue;
    }
    int peer_port = -1, local_port = -1;
    if (numeric_host(peer, peer_length, &peer_port) == req.remote_addr && peer_port == req.remote_port &&
        !numeric_host(local, local_length, &local_port).empty() && local_port == req.local_port) {
      found = fd;
      break;
    }
  }
  closedir(dir);
  return found;
}

// False once the client has closed its end (a read would see end of file) or
// the connection broke. Unread bytes (a pipelined request) mean it is there.
bool client_connected(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) < 0) return true;
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return false;
  if (!(p.revents & POLLIN)) return true;
  char byte;
  return recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

std::vector<std::string> comma_separated(const std::string& list) {
  std::vector<std::string> items;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    const size_t first = item.find_first_not_of(' '), last = item.find_last_not_of(' ');
    if (first != std::string::npos) items.push_back(item.substr(first, last - first + 1));
  }
  return items;
}

struct LoadedModel {
  std::string title, path;
  std::unique_ptr<Pipeline> pipeline;
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  std::vector<LoadedModel> models;
  std::atomic<size_t> current{0};
  std::unique_ptr<JobQueue> queue;
  httplib::Server http;
  int port = 0;
  std::array<unsigned char, 32> key_digest{};
  std::mutex seed_mutex;
  std::mt19937_64 seeds{std::random_device{}()};
  std::atomic<uint64_t> saved{0};

  explicit Impl(const ServerOptions& o) : options(o) {
    // libgomp keeps a team of threads for every thread that ran a parallel
    // region, and once its threads outnumber the cores it stops spinning
    // between regions: each then waits on a futex, 4x slower per step on the
    // bundled model. Loading on a thread of its own ends the loader's team
    // with it, and leaves the cores to the workers' teams.
    std::exception_ptr failure;
    std::thread loader([&] {
      omp_set_num_threads(options.threads);
      try {
        load_models();
      } catch (...) {
        failure = std::current_exception();
      }
    });
    loader.join();
    if (failure) std::rethrow_exception(failure);
    if (!options.output_dir.empty()) std::filesystem::create_directories(options.output_dir);
    if (!options.api_key.empty()) key_digest = sha256(options.api_key);
    queue = std::make_unique<JobQueue>(options.workers, options.queue, std::max(1, options.threads / options.workers));
    routes();
    // A waiting generation holds a connection thread: room for every running
    // and queued one, and for the pollers and pages beside them.
    const size_t threads = static_cast<size_t>(options.workers) + options.queue + 16;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.set_payload_max_length(options.max_body_bytes);
    http.set_keep_alive_timeout(2);
    port = options.port == 0 ? http.bind_to_any_port(options.host) : (http.bind_to_port(options.host, options.port) ? options.port : -1);
    if (port < 0) {
      throw Error("cannot listen on " + options.host + ":" + std::to_string(options.port) + " (in use, or not an address of this machine)");
    }
  }

  void load_models() {
    for (const std::string& path : options.models) {
      models.push_back({model_title(path), path, Pipeline::load(path, options.load)});
      const ModelInfo& info = models.back().pipeline->info();
      if (info.latent && info.vae.empty()) throw Error(path + ": the model makes latents and has no VAE to decode them");
    }
  }

  const LoadedModel* find_model(const std::string& name) const {
    for (const LoadedModel& m : models) {
      if (name == m.title || name == m.path || name == std::filesystem::path(m.title).stem().string()) return &m;
    }
    return nullptr;
  }

  std::string model_choices() const {
    std::string text;
    for (const LoadedModel& m : models) text += (text.empty() ? "" : ", ") + m.title;
    return text;
  }

  uint64_t random_seed() {
    std::lock_guard lock(seed_mutex);
    return seeds() & 0xffffffffu;
  }

  std::string new_task_id() {
    std::lock_guard lock(seed_mutex);
    char id[32];
    std::snprintf(id, sizeof id, "task(%016llx)", static_cast<unsigned long long>(seeds()));
    return id;
  }

  bool authorized(const Request& req) const {
    if (options.api_key.empty() || req.path == "/" || req.path == "/health") return true;
    const std::string header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (header.compare(0, prefix.size(), prefix) != 0) return false;
    // Digests of equal length, compared in constant time: neither the key nor its length leaks.
    return CRYPTO_memcmp(sha256(std::string_view(header).substr(prefix.size())).data(), key_digest.data(), key_digest.size()) == 0;
  }

  void routes();
  void generate(const Request& req, Response& res, bool img2img);
  json progress() const;
  json task_progress(const std::string& task_id) const;
};

void Server::Impl::generate(const Request& req, Response& res, bool img2img) {
  GenerationJobRequest job = parse_generation_request(req.body, img2img, options.limits, random_seed());
  const LoadedModel* model = job.checkpoint.empty() ? &models[current.load()] : find_model(job.checkpoint);
  if (!model) {
    throw ApiError(422, "override_settings.sd_model_checkpoint: no model '" + job.checkpoint + "' (one of " + model_choices() + ")");
  }
  const ModelInfo& info = model->pipeline->info();
  GenerationRequest& r = job.generation;
  if (!info.text) {
    // A class-conditional model reads its classes from the prompt: "sneaker, 3".
    r.classes = comma_separated(r.prompt);
    r.negative_classes = comma_separated(r.negative_prompt);
    for_field("prompt", [&] { return model->pipeline->class_ids(r.classes); });
    for_field("negative_prompt", [&] { return model->pipeline->class_ids(r.negative_classes); });
  } else {
    // The prompt's LoRA tags, checked before the job is queued; the library reads them again as it generates.
    for_field("prompt", [&] { return model->pipeline->prompt_loras(r.prompt); });
  }
  for_field("width, height", [&] { return model->pipeline->image_size(r); });
  if (job.save_images && options.output_dir.empty()) job.ignored.push_back("save_images (the server has no output directory)");
  if (job.task_id.empty()) job.task_id = new_task_id();

  const std::shared_ptr<Job> queued = queue->submit(job, *model->pipeline);
  if (!queued) {
    res.set_header("Retry-After", "5");
    send_error(res, 503, "the queue is full (" + std::to_string(options.queue) + " waiting); try again later");
    return;
  }
  const int socket = connection_socket(req);
  const auto deadline = queued->queued_at + std::chrono::duration<double>(options.timeout_seconds);
  bool timed_out = false;
  while (!queued->wait_for(std::chrono::milliseconds(50))) {
    if (socket >= 0 && !client_connected(socket)) {
      queue->cancel(queued);  // nobody to answer: out of the queue, or stopped within a step
      return;
    }
    if (!timed_out && std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      queue->cancel(queued);
    }
  }
  if (timed_out) {
    send_error(res, 503, "the generation took longer than this server's limit of " + json(options.timeout_seconds).dump() + " s");
    return;
  }
  if (queued->error_status) {
    send_error(res, queued->error_status, queued->error);
    return;
  }

  json images = json::array();
  std::vector<std::string> infotexts;
  for (const GenerationResult& result : queued->results) {
    for (size_t i = 0; i < result.images.size(); ++i) {
      const std::string& parameters = result.parameters[i];
      infotexts.push_back(parameters);
      const std::vector<uint8_t> png = encode_png(result.images[i], {{"parameters", parameters}}, "image");
      if (job.send_images) images.push_back(base64_encode(png));
      if (job.save_images && !options.output_dir.empty()) {
        // Names made here, never from the request: the directory is the only place written.
        const uint64_t n = saved.fetch_add(1) + 1;
        char name[96];
        std::snprintf(name, sizeof name, "%s-%05llu-%llu.png", utc_now("%Y%m%d-%H%M%S").c_str(), static_cast<unsigned long long>(n),
                      static_cast<unsigned long long>(r.seed + infotexts.size() - 1));
        write_png((std::filesystem::path(options.output_dir) / name).string(), result.images[i], {{"parameters", parameters}});
      }
    }
  }
  send_json(res, 200,
            {{"images", images},
             {"parameters", response_parameters(job, info, img2img)},
             {"info", dump(response_info(job, info, infotexts, queued->cancelled))}});
}

json Server::Impl::progress() const {
  const QueueSnapshot s = queue->snapshot();
  double fraction = 0.0, eta = 0.0;
  int64_t done = 0, total = 0;
  if (s.oldest_running) {
    done = s.oldest_running->steps_done, total = s.oldest_running->steps_total;
    fraction = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0.0;
    const double elapsed = s.oldest_running->running_seconds();
    eta = fraction > 0 ? elapsed / fraction - elapsed : 0.0;
  }
  return {{"progress", fraction},
          {"eta_relative", eta},
          {"state",
           {{"skipped", false},
            {"interrupted", s.oldest_running && s.oldest_running->cancel.load()},
            {"job", s.oldest_running ? "txt2img" : ""},
            {"job_count", s.running + s.queued},
            {"job_timestamp", "0"},
            {"job_no", 0},
            {"sampling_step", done},
            {"sampling_steps", total}}},
          {"current_image", nullptr},
          {"textinfo", nullptr},
          {"running", s.running},
          {"queued", s.queued}};
}

// A1111's per-task progress (what its own web page polls): one client's job
// among many, by the force_task_id it sent.
json Server::Impl::task_progress(const std::string& task_id) const {
  const std::shared_ptr<Job> job = queue->find_task(task_id);
  const Job::State state = job ? job->state() : Job::State::Finished;
  json answer = {{"active", job && state == Job::State::Running},
                 {"queued", job && state == Job::State::Queued},
                 {"completed", job && state == Job::State::Finished},
                 {"progress", nullptr},
                 {"eta", nullptr},
                 {"live_preview", nullptr},
                 {"id_live_preview", -1},
                 {"textinfo", !job ? "no such task" : state == Job::State::Queued ? "waiting in the queue" : ""}};
  if (job && state != Job::State::Queued) {
    const int64_t done = job->steps_done, total = job->steps_total;
    const double fraction = state == Job::State::Finished ? 1.0 : total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0.0;
    const double elapsed = job->running_seconds();
    answer["progress"] = fraction;
    answer["eta"] = fraction > 0 && state == Job::State::Running ? elapsed / fraction - elapsed : 0.0;
    answer["textinfo"] = "step " + std::to_string(done) + "/" + std::to_string(total);
  }
  return answer;
}

void Server::Impl::routes() {
  http.set_pre_routing_handler([this](const Request& req, Response& res) {
    if (authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, 401, "this server needs 'Authorization: Bearer <API key>'");
    return httplib::Server::HandlerResponse::Handled;
  });
  // Every error the handlers did not answer themselves (no such endpoint, a body over the limit).
  http.set_error_handler([this](const Request& req, Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      send_error(res, 413, "body: over this server's limit of " + std::to_string(options.max_body_bytes) + " bytes");
    } else if (res.status == 404) {
      send_error(res, 404, "no endpoint " + req.method + " " + req.path);
    } else {
      send_error(res, res.status, reason(res.status));
    }
  });
  http.set_exception_handler([](const Request&, Response& res, std::exception_ptr error) {
    try {
      std::rethrow_exception(error);
    } catch (const ApiError& e) {
      send_error(res, e.status(), e.what());
    } catch (const Error& e) {
      send_error(res, 422, e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, std::string("internal error: ") + e.what());
    } catch (...) {
      send_error(res, 500, "internal error");
    }
  });

  http.Get("/", [](const Request&, Response& res) { res.set_content(std::string(web_page()), "text/html; charset=utf-8"); });
  http.Get("/health", [this](const Request&, Response& res) {
    const QueueSnapshot s = queue->snapshot();
    send_json(res, 200,
              {{"status", "ok"},
               {"version", version()},
               {"model", models[current.load()].title},
               {"workers", options.workers},
               {"running", s.running},
               {"queued", s.queued},
               {"queue_capacity", options.queue}});
  });
  http.Get("/sdapi/v1/sd-models", [this](const Request&, Response& res) {
    json list = json::array();
    for (const LoadedModel& m : models) {
      list.push_back({{"title", m.title},
                      {"model_name", std::filesystem::path(m.title).stem().string()},
                      {"hash", nullptr},
                      {"sha256", nullptr},
                      {"filename", m.path},
                      {"config", nullptr}});
    }
    send_json(res, 200, list);
  });
  http.Get("/sdapi/v1/samplers", [](const Request&, Response& res) { send_json(res, 200, samplers_json()); });
  http.Get("/sdapi/v1/loras", [this](const Request&, Response& res) {
    send_json(res, 200, loras_json(models[current.load()].pipeline->lora_folder()));
  });
  // Every model's listing: each looks tags up in the same folder. A1111 answers null.
  http.Post("/sdapi/v1/refresh-loras", [this](const Request&, Response& res) {
    for (const LoadedModel& m : models) m.pipeline->refresh_lora_folder();
    send_json(res, 200, nullptr);
  });
  http.Get("/sdapi/v1/schedulers", [](const Request&, Response& res) { send_json(res, 200, schedulers_json()); });
  http.Get("/sdapi/v1/options", [this](const Request&, Response& res) {
    send_json(res, 200,
              {{"sd_model_checkpoint", models[current.load()].title},
               {"CLIP_stop_at_last_layers", 1},
               {"samples_format", "png"},
               {"outdir_samples", options.output_dir}});
  });
  http.Post("/sdapi/v1/options", [this](const Request& req, Response& res) {
    const json body = parse_json_object(req.body);
    json ignored = json::array();
    for (const auto& [key, value] : body.items()) {
      if (key != "sd_model_checkpoint") {
        ignored.push_back(key);
        continue;
      }
      if (!value.is_string()) throw ApiError(422, "sd_model_checkpoint: expected a string");
      const LoadedModel* model = find_model(value.get<std::string>());
      if (!model) throw ApiError(422, "sd_model_checkpoint: no model '" + value.get<std::string>() + "' (one of " + model_choices() + ")");
      current = static_cast<size_t>(model - models.data());
    }
    send_json(res, 200, {{"ignored_fields", ignored}});
  });
  http.Get("/sdapi/v1/progress", [this](const Request&, Response& res) { send_json(res, 200, progress()); });
  http.Post("/internal/progress", [this](const Request& req, Response& res) {
    const json body = parse_json_object(req.body);
    if (!body.contains("id_task") || !body["id_task"].is_string()) {
      throw ApiError(422, "id_task: expected a string");
    }
    send_json(res, 200, task_progress(body["id_task"].get<std::string>()));
  });
  http.Post("/sdapi/v1/interrupt", [this](const Request&, Response& res) {
    send_json(res, 200, {{"interrupted", queue->interrupt_running()}});
  });
  http.Post("/sdapi/v1/txt2img", [this](const Request& req, Response& res) { generate(req, res, false); });
  http.Post("/sdapi/v1/img2img", [this](const Request& req, Response& res) { generate(req, res, true); });
}

Server::Server(const ServerOptions& options) : impl_(std::make_unique<Impl>(options)) {}
Server::~Server() = default;
int Server::port() const { return impl_->port; }
void Server::run() { impl_->http.listen_after_bind(); }
void Server::stop() {
  // Requests waiting on generations end within a step, so the listener can join their threads.
  impl_->queue->cancel_all();
  impl_->http.stop();
}

}  // namespace tiledraw::server
