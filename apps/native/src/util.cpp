#include "util.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>

#include "error.h"

namespace se {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) fail(SE_ERR_IO, "io_error", "cannot open " + path + ": " + std::strerror(errno));
  std::streamsize size = f.tellg();
  std::vector<uint8_t> data(static_cast<size_t>(size < 0 ? 0 : size));
  f.seekg(0);
  if (size > 0 && !f.read(reinterpret_cast<char*>(data.data()), size))
    fail(SE_ERR_IO, "io_error", "cannot read " + path);
  return data;
}

std::string read_text(const std::string& path) {
  auto data = read_file(path);
  return std::string(data.begin(), data.end());
}

namespace {
// nlohmann keeps one of two equal keys silently; the formats forbid them, so the DOM parser is wrapped to refuse.
class StrictSax : public nlohmann::detail::json_sax_dom_parser<json> {
 public:
  explicit StrictSax(json& out) : json_sax_dom_parser(out, false) {}
  bool start_object(std::size_t n) {
    keys_.emplace_back();
    return json_sax_dom_parser::start_object(n);
  }
  bool end_object() {
    keys_.pop_back();
    return json_sax_dom_parser::end_object();
  }
  bool key(std::string& k) {
    if (!keys_.back().insert(k).second) {
      duplicate = k;
      return false;
    }
    return json_sax_dom_parser::key(k);
  }
  bool parse_error(std::size_t pos, const std::string& token, const nlohmann::detail::exception& e) {
    error = e.what();
    (void)pos, (void)token;
    return false;
  }
  std::string duplicate, error;

 private:
  std::vector<std::set<std::string>> keys_;
};
}  // namespace

json parse_json(const std::string& text, const std::string& what, const std::string& code) {
  json out;
  StrictSax sax(out);
  bool ok = false;
  try {
    ok = json::sax_parse(text, &sax);
  } catch (const json::exception& e) {
    sax.error = e.what();
  }
  if (!sax.duplicate.empty()) fail(SE_ERR_FORMAT, code, what + " has the key '" + sax.duplicate + "' twice");
  // nlohmann quotes the offending input bytes; keep the message valid UTF-8 (the C ABI promises it) and short.
  std::string why = sax.error.substr(0, 160);
  for (char& c : why)
    if (static_cast<unsigned char>(c) >= 0x80 || static_cast<unsigned char>(c) < 0x20) c = '?';
  if (!ok) fail(SE_ERR_FORMAT, code, what + " is not JSON (" + why + ")");
  return out;
}

namespace {
struct DigestCtx {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
  DigestCtx() {
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
      fail(SE_ERR_RUNTIME, "openssl", "cannot initialise SHA-256");
  }
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx.get(), p, n); }
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx.get(), md, &n);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < n; ++i) {
      out += digits[md[i] >> 4];
      out += digits[md[i] & 15];
    }
    return out;
  }
};
}  // namespace

std::string sha256_hex(const uint8_t* data, size_t size) {
  DigestCtx d;
  d.update(data, size);
  return d.hex();
}

std::string sha256_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  DigestCtx d;
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (f.gcount() > 0) d.update(buf.data(), static_cast<size_t>(f.gcount()));
  }
  if (f.bad()) return "";
  return d.hex();
}

static bool name_char(char c, bool first) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return !first && (c == '_' || c == '.' || c == '-');
}

bool is_name(const std::string& s) {
  if (s.empty() || s.size() > 64 || s.find("..") != std::string::npos) return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (!name_char(s[i], i == 0)) return false;
  return true;
}

bool is_sha256(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

bool is_relative_path(const std::string& s) {
  if (s.empty() || s.size() > 255) return false;
  size_t start = 0;
  while (true) {
    size_t end = s.find('/', start);
    std::string seg = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (seg.empty() || seg.size() > 128 || seg.find("..") != std::string::npos) return false;
    for (size_t i = 0; i < seg.size(); ++i) {
      char c = seg[i];
      bool ok = name_char(c, true) || c == '_' || c == '-' || (i > 0 && c == '.');
      if (!ok) return false;
    }
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

const json& need(const json& doc, const char* key, const std::string& what) {
  if (!doc.is_object()) fail(SE_ERR_FORMAT, "bad_field", what + " is not a JSON object");
  auto it = doc.find(key);
  if (it == doc.end()) fail(SE_ERR_FORMAT, "missing_field", what + " has no '" + key + "'");
  return *it;
}

int64_t need_int(const json& doc, const char* key, const std::string& what, int64_t lo, int64_t hi) {
  const json& v = need(doc, key, what);
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
    fail(SE_ERR_FORMAT, "bad_field", what + "." + key + " must be an integer, not " + v.dump().substr(0, 60));
  int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    fail(SE_ERR_FORMAT, "bad_field", what + "." + key + " is " + std::to_string(x) + ", outside " +
                                         std::to_string(lo) + ".." + std::to_string(hi));
  return x;
}

double need_number(const json& doc, const char* key, const std::string& what) {
  const json& v = need(doc, key, what);
  if (!v.is_number() || !std::isfinite(v.get<double>()))
    fail(SE_ERR_FORMAT, "bad_field", what + "." + key + " must be a finite number, not " + v.dump());
  return v.get<double>();
}

std::string need_string(const json& doc, const char* key, const std::string& what) {
  const json& v = need(doc, key, what);
  if (!v.is_string()) fail(SE_ERR_FORMAT, "bad_field", what + "." + key + " must be a string, not " + v.dump());
  return v.get<std::string>();
}

bool need_bool(const json& doc, const char* key, const std::string& what) {
  const json& v = need(doc, key, what);
  if (!v.is_boolean()) fail(SE_ERR_FORMAT, "bad_field", what + "." + key + " must be true or false");
  return v.get<bool>();
}

std::string join_path(const std::string& dir, const std::string& rel) {
  if (dir.empty()) return rel;
  return dir.back() == '/' ? dir + rel : dir + "/" + rel;
}

std::string short_hex(const std::string& s) { return s.size() > 16 ? s.substr(0, 16) + "…" : s; }

}  // namespace se
