#pragma once
#include <memory>
#include <string>
#include <nlohmann/json.hpp>
#include "spartan_edge.h"
namespace spartan_cli {
struct ClientOptions { std::string server, cache, target; bool offline; };
class Client {
 public:
  explicit Client(ClientOptions o) : opt_(std::move(o)) {}
  ~Client();
  bool prepare(const std::string& task, se_engine** engine, nlohmann::json* extra);
 private:
  ClientOptions opt_;
  se_engine* engine_ = nullptr;
};
}
