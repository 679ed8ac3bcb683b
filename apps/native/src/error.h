// se::Error: what every fallible function of the runtime throws; the C ABI turns it into se_status + code + message.
#pragma once

#include <stdexcept>
#include <string>

#include "spartan_edge.h"

namespace se {

class Error : public std::runtime_error {
 public:
  // code: a stable snake_case string (the conformance vectors' `error` codes); message: for people.
  Error(se_status status, std::string code, const std::string& message)
      : std::runtime_error(message), status_(status), code_(std::move(code)) {}
  se_status status() const noexcept { return status_; }
  const std::string& code() const noexcept { return code_; }

 private:
  se_status status_;
  std::string code_;
};

[[noreturn]] inline void fail(se_status status, const std::string& code, const std::string& message) {
  throw Error(status, code, message + " [" + code + "]");
}

}  // namespace se
