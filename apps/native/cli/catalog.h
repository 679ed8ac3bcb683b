// The catalog (`GET /manifest`, docs/server.md) checked completely before the client uses any of it: the same checks,
// order and error codes as spartan_formats.catalog.read_catalog (tests/conformance pins them). Every string the client
// later turns into a URL or a file name is checked here.
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace spartan_cli {

struct CatalogError : std::runtime_error {
  CatalogError(std::string code, const std::string& message)
      : std::runtime_error(message + " [" + code + "]"), code(std::move(code)) {}
  std::string code;
};

// Parses and validates the response body; returns the parsed document. Throws CatalogError.
nlohmann::json read_catalog(const std::string& body);

}  // namespace spartan_cli
