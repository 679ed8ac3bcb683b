// Small shared helpers: files, sha256 (OpenSSL), names and digests from files or the network, JSON field access.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace se {

using json = nlohmann::json;

std::vector<uint8_t> read_file(const std::string& path);
std::string read_text(const std::string& path);
// Strict JSON (no duplicate keys: two readers could pick different values); fails with SE_ERR_FORMAT + code.
json parse_json(const std::string& text, const std::string& what, const std::string& code = "not_json");

std::string sha256_hex(const uint8_t* data, size_t size);
std::string sha256_file(const std::string& path);  // "" if the file cannot be read

// The name and digest rules of docs/formats.md (spartan_formats.names), matched as whole strings.
bool is_name(const std::string& s);        // [A-Za-z0-9][A-Za-z0-9_.-]{0,63}, no ".."
bool is_sha256(const std::string& s);      // 64 lowercase hex digits
bool is_relative_path(const std::string& s);  // "/"-separated segments [A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}, <= 255

// Field access that fails with SE_ERR_FORMAT and a code instead of a nlohmann exception.
const json& need(const json& doc, const char* key, const std::string& what);
int64_t need_int(const json& doc, const char* key, const std::string& what, int64_t lo, int64_t hi);
double need_number(const json& doc, const char* key, const std::string& what);
std::string need_string(const json& doc, const char* key, const std::string& what);
bool need_bool(const json& doc, const char* key, const std::string& what);

std::string join_path(const std::string& dir, const std::string& rel);
std::string short_hex(const std::string& s);  // first 16 characters + "…" for messages

}  // namespace se
