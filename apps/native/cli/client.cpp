#include "client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "catalog.h"
#include "http.h"
#include "util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace spartan_cli {

namespace {

constexpr int kAttempts = 4;
constexpr long kTimeout = 30;

struct ClientError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void warn(const std::string& msg) { std::fprintf(stderr, "warning: %s\n", msg.c_str()); }

// <cache>/blobs/<sha256>, <cache>/partial/<sha256>.part, <cache>/state.json. File names are only ever built from
// strings that passed is_sha256 (64 lowercase hex), never from anything else the network sent.
class Cache {
 public:
  explicit Cache(const std::string& root) : root_(root) {
    fs::create_directories(root_ / "blobs");
    fs::create_directories(root_ / "partial");
  }
  std::string blob(const std::string& sha) const { return (root_ / "blobs" / checked(sha)).string(); }
  std::string partial(const std::string& sha) const { return (root_ / "partial" / (checked(sha) + ".part")).string(); }
  bool has(const std::string& sha) const { return fs::is_regular_file(blob(sha)); }
  // Re-hash before use: storage can rot and files can be tampered with. A bad copy is removed.
  bool verified(const std::string& sha) const {
    if (!has(sha)) return false;
    if (se::sha256_file(blob(sha)) == sha) return true;
    fs::remove(blob(sha));
    return false;
  }
  json load_state() const {
    std::ifstream f(root_ / "state.json");
    if (!f) return json::object();
    json s = json::parse(f, nullptr, false);
    return s.is_object() ? s : json::object();
  }
  void save_state(const json& state) const {  // atomic: temporary file, fsync, rename
    std::string tmp = (root_ / ".state.json.tmp").string(), text = state.dump(1);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) throw ClientError("cannot write " + tmp);
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok || std::rename(tmp.c_str(), (root_ / "state.json").c_str()) != 0) throw ClientError("cannot write state");
  }

 private:
  static const std::string& checked(const std::string& sha) {
    if (!se::is_sha256(sha)) throw ClientError("refusing a file name that is not a sha256: " + sha.substr(0, 80));
    return sha;
  }
  fs::path root_;
};

std::string text_field(const json& doc, const char* key, const std::string& what) {
  if (!doc.is_object() || !doc.contains(key) || !doc[key].is_string())
    throw ClientError(what + " has no string '" + key + "'");
  return doc[key].get<std::string>();
}

std::string sha_field(const json& doc, const char* key, const std::string& what) {
  std::string s = text_field(doc, key, what);
  if (!se::is_sha256(s)) throw ClientError(what + "." + key + " is not 64 lowercase hex digits; refused");
  return s;
}

uint64_t size_field(const json& doc, const std::string& what) {
  if (!doc.contains("bytes") || !doc["bytes"].is_number_unsigned()) throw ClientError(what + " has no byte count");
  return doc["bytes"].get<uint64_t>();
}

// A URL path from the manifest is appended to the server's URL (never used as a file name): it must be a plain
// absolute path without control characters or spaces.
std::string url_field(const json& doc, const std::string& what) {
  std::string u = text_field(doc, "url", what);
  if (u.empty() || u[0] != '/' || u.size() > 2048) throw ClientError(what + ".url is not a server path; refused");
  for (unsigned char c : u)
    if (c <= 0x20 || c >= 0x7f) throw ClientError(what + ".url has a character URLs do not; refused");
  return u;
}

std::string basename(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

}  // namespace

struct Client::Impl {
  ClientOptions opt;
  Cache cache;
  json state;
  json manifest;  // null until fetched
  std::vector<std::string> warnings;
  uint64_t fetched = 0;
  se_engine* engine = nullptr;

  explicit Impl(ClientOptions o) : opt(std::move(o)), cache(opt.cache), state(cache.load_state()) {
    while (!opt.server.empty() && opt.server.back() == '/') opt.server.pop_back();
  }
  void note(const std::string& m) {
    warnings.push_back(m);
    warn(m);
  }

  // GET /manifest (If-None-Match with the cached ETag). Anything but a JSON object with format_version 1 is refused.
  void fetch_manifest() {
    std::vector<std::string> headers;
    if (state.contains("manifest_etag") && state["manifest_etag"].is_string() && state.contains("manifest"))
      headers.push_back("If-None-Match: " + state["manifest_etag"].get<std::string>());
    HttpResult r = http_get(opt.server + "/manifest", headers, kTimeout);
    if (r.status == 0) throw ClientError("cannot reach " + opt.server + ": " + r.error);
    if (r.status == 304 && state.contains("manifest")) {
      manifest = state["manifest"];
      return;
    }
    if (r.status != 200) throw ClientError("GET /manifest: HTTP " + std::to_string(r.status));
    json m;
    try {
      m = read_catalog(r.body);
    } catch (const CatalogError& e) {
      throw ClientError("GET /manifest: the answer is not a valid catalog (" +
                        (r.content_type.empty() ? std::string("no content type") : r.content_type) + "): " + e.what());
    }
    manifest = m;
    state["manifest"] = m;
    state["manifest_etag"] = r.etag.empty() ? json(nullptr) : json(r.etag);
    cache.save_state(state);
  }

  // Download url into the cache as `sha`, resuming a partial file; returns the blob path.
  std::string fetch(const std::string& url, const std::string& sha, uint64_t size) {
    if (cache.has(sha)) return cache.blob(sha);
    const std::string part = cache.partial(sha);
    std::string last_error;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      std::error_code ec;
      uint64_t have = fs::exists(part) ? fs::file_size(part, ec) : 0;
      if (have >= size) break;
      HttpResult r = http_download(opt.server + url, part, have, sha, size, kTimeout);
      fetched += r.written;
      if (r.status == 416) {
        fs::remove(part);
        continue;
      }
      if (r.status != 0 && r.status != 200 && r.status != 206)
        throw ClientError("GET " + url + ": HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 200));
      if (!r.error.empty()) last_error = r.error;  // keep what arrived; the next attempt resumes from there
    }
    std::error_code ec;
    uint64_t have = fs::exists(part) ? fs::file_size(part, ec) : 0;
    if (have < size)
      throw ClientError("download of " + url + " stopped at " + std::to_string(have) + " of " +
                        std::to_string(size) + " bytes" + (last_error.empty() ? "" : " (" + last_error + ")") +
                        "; will resume next time");
    if (have > size || se::sha256_file(part) != sha) {
      fs::remove(part);
      throw ClientError(url + ": the downloaded file (" + std::to_string(have) + " bytes) does not match the "
                        "manifest's sha256 " + se::short_hex(sha) + " (" + std::to_string(size) + " bytes); refused");
    }
    fs::rename(part, cache.blob(sha));
    return cache.blob(sha);
  }

  void ensure_backbone() {
    const json* cur = state.contains("backbone") && state["backbone"].is_object() ? &state["backbone"] : nullptr;
    if (manifest.is_null()) {
      if (!cur) throw ClientError("no backbone for " + opt.target + " in the cache; run once online first");
      return;
    }
    const json& bbs = manifest["backbones"];
    if (!bbs.contains(opt.target) || !bbs[opt.target].is_object())
      throw ClientError("the server has no backbone for target " + opt.target);
    const json& bb = bbs[opt.target];
    try {
      const std::string fp = sha_field(bb, "fingerprint", "backbone");
      if (!bb.contains("files") || !bb["files"].is_array() || bb["files"].empty())
        throw ClientError("the backbone has no file list");
      bool same = cur && cur->value("fingerprint", "") == fp && cur->value("version", json()) == bb.value("version", json());
      if (same)
        for (const json& f : (*cur)["files"]) same = same && cache.has(sha_field(f, "sha256", "cached file"));
      if (same) return;
      json files = json::array();
      for (const json& f : bb["files"]) {
        std::string sha = sha_field(f, "sha256", "backbone file");
        std::string path = text_field(f, "path", "backbone file");
        if (!se::is_relative_path(path)) throw ClientError("backbone file path '" + path + "' refused");
        fetch(url_field(f, "backbone file"), sha, size_field(f, "backbone file"));
        files.push_back({{"path", path}, {"sha256", sha}});
      }
      json keep = json::object();
      for (const char* k : {"fingerprint", "version", "id", "program", "inputs", "outputs", "max_seq_length",
                            "max_labels", "memory_shape", "quantize"})
        keep[k] = bb.value(k, json());
      keep["files"] = files;
      state["backbone"] = keep;
      cache.save_state(state);
    } catch (const ClientError& e) {
      if (!cur) throw;
      note(std::string(e.what()) + "; keeping the cached backbone " + se::short_hex((*cur).value("fingerprint", "")));
    }
  }

  // Validates a downloaded memory file with the library: the same reader the engine uses.
  void check_memory(const std::string& path, const std::string& task) {
    if (se_validate_memory(path.c_str(), state["backbone"].dump().c_str()) != SE_OK)
      throw ClientError(std::string("memory for '") + task + "': " + se_last_error() + "; refused");
  }

  json ensure_memory(const std::string& task) {
    const std::string fp = state["backbone"].value("fingerprint", "");
    json last = state.contains("memories") && state["memories"].contains(task) ? state["memories"][task] : json();
    if (!last.is_null() && last.value("backbone_fingerprint", "") != fp) last = json();  // for another backbone
    if (manifest.is_null()) {
      if (last.is_null()) throw ClientError("no memory for task '" + task + "' in the cache; run once online first");
      return last;
    }
    try {
      const json& tasks = manifest["tasks"];
      if (!tasks.contains(task) || !tasks[task].is_object() || !tasks[task].contains(opt.target))
        throw ClientError("the server has no task '" + task + "' for " + opt.target);
      const json& entry = tasks[task][opt.target];
      const std::string sha = sha_field(entry, "sha256", "memory entry");
      if (!last.is_null() && last.value("sha256", "") == sha && cache.has(sha)) return last;
      const std::string efp = sha_field(entry, "backbone_fingerprint", "memory entry");
      if (efp != fp)
        throw ClientError("the server's memory for '" + task + "' is for backbone " + se::short_hex(efp) +
                          ", the cached backbone is " + se::short_hex(fp) + "; refused");
      std::string path = fetch(url_field(entry, "memory entry") + "&backbone=" + fp, sha, size_field(entry, "memory"));
      try {
        check_memory(path, task);
      } catch (const ClientError&) {
        fs::remove(path);
        throw;
      }
      json fresh = {{"version", entry.value("version", json())}, {"sha256", sha}, {"backbone_fingerprint", fp}};
      state["memories"][task] = fresh;
      cache.save_state(state);
      return fresh;
    } catch (const ClientError& e) {
      if (last.is_null()) throw;
      note(std::string(e.what()) + "; using the last good memory for '" + task + "' (version " +
           last.value("version", json()).dump() + ")");
      return last;
    }
  }
};

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() { se_engine_free(impl_->engine); }

bool Client::prepare(const std::string& task, se_engine** engine, json* extra) {
  Impl& s = *impl_;
  try {
    if (!se::is_name(task)) throw ClientError("task '" + task + "' is not a valid name");
    if (!se::is_name(s.opt.target)) throw ClientError("target '" + s.opt.target + "' is not a valid name");
    if (!s.opt.offline) {
      try {
        s.fetch_manifest();
      } catch (const ClientError& e) {
        if (!s.state.contains("backbone")) throw;
        s.note(std::string(e.what()) + "; using the cache");
      }
    }
    s.ensure_backbone();
    json mem = s.ensure_memory(task);
    const json& bb = s.state["backbone"];
    std::string program_sha, tokenizer_sha, defaults_sha;
    for (const json& f : bb["files"]) {
      std::string p = f.value("path", "");
      if (p == bb.value("program", "")) program_sha = sha_field(f, "sha256", "file");
      if (basename(p) == "tokenizer.json") tokenizer_sha = sha_field(f, "sha256", "file");
      if (basename(p) == "defaults.safetensors") defaults_sha = sha_field(f, "sha256", "file");  // recipe program
    }
    if (program_sha.empty() || tokenizer_sha.empty()) throw ClientError("the backbone bundle lacks its program or "
                                                                        "tokenizer.json");
    const std::string mem_sha = sha_field(mem, "sha256", "memory");
    for (const std::string& sha : {program_sha, tokenizer_sha, mem_sha, defaults_sha})
      if (!sha.empty() && !s.cache.verified(sha))
        throw ClientError("cached file " + se::short_hex(sha) + " is missing or corrupt; run online to re-fetch");
    const std::string defaults = defaults_sha.empty() ? "" : s.cache.blob(defaults_sha);
    if (se_engine_open_with_defaults(bb.dump().c_str(), s.cache.blob(program_sha).c_str(),
                                     s.cache.blob(tokenizer_sha).c_str(), defaults.empty() ? nullptr : defaults.c_str(),
                                     &s.engine) != SE_OK)
      throw ClientError(std::string("cannot open the backbone: ") + se_last_error());
    if (se_engine_load_memory(s.engine, s.cache.blob(mem_sha).c_str()) != SE_OK)
      throw ClientError(std::string("memory for '") + task + "': " + se_last_error());
    const char* name = nullptr;
    se_engine_task(s.engine, &name, nullptr, nullptr);
    if (task != name) throw ClientError(std::string("the memory file is for task '") + name + "', not '" + task + "'");
    *engine = s.engine;
    *extra = {{"memory_version", mem.value("version", json())}, {"bytes_fetched", s.fetched},
              {"warnings", s.warnings}};
    return true;
  } catch (const std::exception& e) {  // ClientError, filesystem errors
    std::fprintf(stderr, "error: %s\n", e.what());
    return false;
  }
}

}  // namespace spartan_cli
