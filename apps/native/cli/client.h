// Server mode of spartan-edge: what `python -m apps.client` does (apps/client), natively. Manifest, the backbone
// bundle once, one memory per task, sha256-verified resumable downloads, a cache that keeps the last good copy.
// The cache layout and state file are apps.client's (docs/server.md), so both clients can share a cache.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "spartan_edge.h"

namespace spartan_cli {

struct ClientOptions {
  std::string server, cache, target;
  bool offline = false;
};

class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Make sure the backbone and `task`'s memory are cached and verified, open the engine with that memory active.
  // On success *engine is owned by the client; *extra gets memory_version, bytes_fetched, warnings. On failure the
  // reason is on stderr and false is returned.
  bool prepare(const std::string& task, se_engine** engine, nlohmann::json* extra);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace spartan_cli
