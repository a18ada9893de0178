#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cli/commands.h"
#include "cli/interrupt.h"
#include "server/http_server.h"
#include "tiledraw/memory.h"
#include "tiledraw/tiledraw.h"

namespace tiledraw::cli {
namespace {

struct ServeArgs {
  std::vector<std::string> models;
  std::string listen = "127.0.0.1:7860", api_key, output_dir, precision = "auto", tokenizer, lora_dir, max_body = "64M";
  int workers = 1, max_steps = 150;
  int64_t queue = 8, max_size = 2048, max_images = 16;
  double timeout = 600;
};

// "HOST:PORT", "[IPv6]:PORT" or "PORT" (on the loopback address).
std::pair<std::string, int> parse_listen(const std::string& text) {
  std::string host = "127.0.0.1", port = text;
  if (const size_t colon = text.rfind(':'); colon != std::string::npos) {
    host = text.substr(0, colon), port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  }
  char* end = nullptr;
  const long number = std::strtol(port.c_str(), &end, 10);
  if (host.empty() || port.empty() || *end != '\0' || number < 0 || number > 65535) {
    throw Error("--listen: '" + text + "' is not HOST:PORT (for example 127.0.0.1:7860, or 0.0.0.0:7860 for every interface)");
  }
  return {host, static_cast<int>(number)};
}

void run_serve(const ServeArgs& a) {
  server::ServerOptions options;
  options.models = a.models.empty() ? std::vector<std::string>{default_model_path()} : a.models;
  options.load.precision = precision_flag(a.precision, "--precision");
  options.load.accelerator = global_options().accelerator;
  options.load.tokenizer = a.tokenizer;
  options.load.lora_dir = a.lora_dir;
  std::tie(options.host, options.port) = parse_listen(a.listen);
  options.workers = a.workers;
  options.queue = static_cast<size_t>(a.queue);
  // The key may come from the environment, where `ps` does not show it.
  const char* key_from_environment = std::getenv("TILEDRAW_API_KEY");
  options.api_key = !a.api_key.empty() ? a.api_key : key_from_environment ? key_from_environment : "";
  options.output_dir = a.output_dir;
  options.limits = {a.max_size, a.max_steps, a.max_images};
  options.max_body_bytes = static_cast<size_t>(parse_memory_size(a.max_body, "--max-body"));
  options.timeout_seconds = a.timeout;
  options.threads = omp_get_max_threads();

  const std::atomic<bool>& interrupted = cancel_on_interrupt();
  server::Server server(options);
  std::printf("tiledraw serve: http://%s:%d/ (%zu model%s, %d worker%s, queue %zu%s)\n",
              options.host.find(':') == std::string::npos ? options.host.c_str() : ("[" + options.host + "]").c_str(),
              server.port(), options.models.size(), options.models.size() == 1 ? "" : "s", options.workers,
              options.workers == 1 ? "" : "s", options.queue, options.api_key.empty() ? "" : ", API key required");
  std::fflush(stdout);
  std::thread listener([&] { server.run(); });
  while (!interrupted.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server.stop();
  listener.join();
  std::printf("tiledraw serve: stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve the A1111 web UI's HTTP API (/sdapi/v1) and a web page");
  cmd->add_option("-m,--model", args->models,
                  "Models to load once and serve, files or diffusers folders; the first is current "
                  "(default: the bundled Fashion-MNIST text-to-image model)");
  cmd->add_option("--precision", args->precision, "Model matrices as stored (auto), float, or 8bit-s")->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer, "CLIP vocabulary for models that carry none");
  cmd->add_option("--lora-dir", args->lora_dir,
                  "Where prompts' <lora:NAME:TE:UNET> tags find their adapters (listed by /sdapi/v1/loras): a folder "
                  "searched, with its subfolders, for NAME.safetensors or a file whose ss_output_name is NAME");
  cmd->add_option("--listen", args->listen, "Address and port; 0.0.0.0:PORT listens on every interface")->capture_default_str();
  cmd->add_option("--workers", args->workers, "Generations that run at once, sharing the cores")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--queue", args->queue, "Requests that may wait for a worker; beyond them the answer is 503")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--api-key", args->api_key,
                  "Require 'Authorization: Bearer KEY' on every endpoint but / and /health (default: $TILEDRAW_API_KEY)");
  cmd->add_option("--output-dir", args->output_dir, "Where requests with save_images write their PNGs (default: nowhere)");
  cmd->add_option("--max-size", args->max_size, "Largest width or height a request may ask for, in pixels")
      ->capture_default_str()
      ->check(CLI::Range(8, 16384));
  cmd->add_option("--max-steps", args->max_steps, "Most sampling steps a request may ask for")->capture_default_str()->check(CLI::Range(1, 10000));
  cmd->add_option("--max-images", args->max_images, "Most images (batch_size x n_iter) in one request")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--max-body", args->max_body, "Largest request body, as 64M or bytes")->capture_default_str();
  cmd->add_option("--timeout", args->timeout, "Seconds a request may take, queued and running, before it is stopped")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 86400.0));
  cmd->callback([args] { run_serve(*args); });
}

}  // namespace tiledraw::cli
