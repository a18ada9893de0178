#pragma once

#include <memory>
#include <string>
#include <vector>

#include "server/a1111_api.h"

// `tiledraw serve`: the A1111 /sdapi/v1 API, a web page and a health check
// over HTTP (cpp-httplib), on models loaded once and shared by the workers.
namespace tiledraw::server {

struct ServerOptions {
  std::vector<std::string> models;  // files or folders; the first is current
  LoadOptions load;
  std::string host = "127.0.0.1";
  int port = 7860;  // 0: any free port
  int workers = 1;
  size_t queue = 8;         // jobs waiting beyond the running ones
  std::string api_key;      // empty: no authentication
  std::string output_dir;   // where save_images writes; empty: nowhere
  ServerLimits limits;
  size_t max_body_bytes = 64 << 20;
  double timeout_seconds = 600;  // a request's whole time, queued and running
  int threads = 1;               // OpenMP threads for all workers together
};

class Server {
 public:
  // Loads the models and binds the address; an Error names what failed.
  explicit Server(const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;  // the bound port
  // Serves until stop() (from another thread or a signal handler's poller).
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tiledraw::server
