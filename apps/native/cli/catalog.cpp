#include "catalog.h"

#include <cmath>
#include <set>

#include "error.h"
#include "util.h"

using nlohmann::json;

namespace spartan_cli {

namespace {

[[noreturn]] void bad(const std::string& code, const std::string& msg) { throw CatalogError(code, msg); }

size_t chars(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

const json& obj(const json& v, const std::string& what, const char* code = "bad_field") {
  if (!v.is_object()) bad(code, what + " must be a JSON object");
  return v;
}

const json& need(const json& d, const char* key, const std::string& what) {
  auto it = d.find(key);
  if (it == d.end()) bad("missing_field", what + " has no '" + key + "'");
  return *it;
}

bool has(const json& d, const char* key) { return d.contains(key) && !d[key].is_null(); }

int64_t integer(const json& v, const std::string& what, int64_t lo, int64_t hi) {
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
    bad("bad_field", what + " must be an integer");
  int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) bad("bad_field", what + " is " + std::to_string(x) + ", outside its range");
  return x;
}

double number(const json& v, const std::string& what, bool positive = false) {
  if (!v.is_number() || !std::isfinite(v.get<double>())) bad("bad_field", what + " must be a finite number");
  if (positive && v.get<double>() <= 0) bad("bad_field", what + " must be positive");
  return v.get<double>();
}

std::string string(const json& v, const std::string& what, size_t max_len) {
  if (!v.is_string() || chars(v.get<std::string>()) > max_len) bad("bad_field", what + " must be a short string");
  return v.get<std::string>();
}

std::vector<std::string> string_list(const json& v, const std::string& what, size_t max_items) {
  if (!v.is_array() || v.size() > max_items) bad("bad_field", what + " must be a list of strings");
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) out.push_back(string(v[i], what + "[" + std::to_string(i) + "]", 256));
  return out;
}

std::string name(const json& v, const std::string& what) {
  if (!v.is_string() || !se::is_name(v.get<std::string>())) bad("bad_name", what + " is not a valid name");
  return v.get<std::string>();
}

std::string sha(const json& v, const std::string& what, const char* code = "bad_sha256") {
  if (!v.is_string() || !se::is_sha256(v.get<std::string>())) bad(code, what + " is not 64 lowercase hex digits");
  return v.get<std::string>();
}

std::string path(const json& v, const std::string& what) {
  if (!v.is_string() || !se::is_relative_path(v.get<std::string>()))
    bad("bad_path", what + " is not a relative path of plain names");
  return v.get<std::string>();
}

// A same-server path: `/(?!/)[A-Za-z0-9_.~%/?&=:+-]*`, no "/../" (a scheme, //host or @host would leave the server).
void url(const json& v, const std::string& what) {
  bool ok = v.is_string() && v.get<std::string>().size() <= 2048;
  if (ok) {
    const std::string u = v.get<std::string>();
    ok = !u.empty() && u[0] == '/' && (u.size() < 2 || u[1] != '/') && (u + "/").find("/../") == std::string::npos;
    for (size_t i = 1; ok && i < u.size(); ++i) {
      char c = u[i];
      ok = std::isalnum(static_cast<unsigned char>(c)) || std::string("_.~%/?&=:+-").find(c) != std::string::npos;
    }
  }
  if (!ok) bad("bad_url", what + " is not a path on this server");
}

void memory_shape(const json& v, const std::string& what) {
  const json& d = obj(v, what);
  int64_t parents = 0, top_k = 0;
  for (const char* k : {"num_layers", "num_parents", "num_children", "top_k", "hidden_size"}) {
    int64_t x = integer(need(d, k, what), what + "." + k, 1, 1 << 20);
    if (std::string(k) == "num_parents") parents = x;
    if (std::string(k) == "top_k") top_k = x;
  }
  number(need(d, "temperature", what), what + ".temperature", true);
  if (top_k > parents) bad("bad_field", what + ".top_k exceeds num_parents");
}

void backbone(const json& v, const std::string& w) {  // spartan_formats.backbone.read_backbone
  const json& d = obj(v, w);
  sha(need(d, "fingerprint", w), w + ".fingerprint", "bad_fingerprint");
  if (!d.contains("memory_shape")) bad("missing_field", w + " has no 'memory_shape'");
  memory_shape(d["memory_shape"], w + ".memory_shape");
  integer(need(d, "max_labels", w), w + ".max_labels", 1, 1024);
  integer(need(d, "max_seq_length", w), w + ".max_seq_length", 2, 1 << 16);
  for (const char* k : {"hidden_size", "num_layers"})
    if (has(d, k) && integer(d[k], w + "." + k, 1, INT64_MAX) != d["memory_shape"][k].get<int64_t>())
      bad("bad_field", w + "." + k + " differs from memory_shape");
  const json& files = need(d, "files", w);
  if (!files.is_array() || files.empty() || files.size() > 64) bad("bad_field", w + ".files must be a list");
  std::set<std::string> paths;
  for (size_t i = 0; i < files.size(); ++i) {
    std::string fw = w + ".files[" + std::to_string(i) + "]";
    const json& f = obj(files[i], fw);
    std::string p = path(need(f, "path", fw), fw + ".path");
    sha(need(f, "sha256", fw), fw + ".sha256");
    integer(need(f, "bytes", fw), fw + ".bytes", 0, int64_t(1) << 50);
    if (!paths.insert(p).second) bad("duplicate_path", w + ".files lists " + p + " twice");
  }
  if (!paths.count(path(need(d, "program", w), w + ".program"))) bad("bad_field", w + ".program is not a file");
  if (has(d, "tokenizer"))
    for (const std::string& p : string_list(d["tokenizer"], w + ".tokenizer", 64))
      if (!paths.count(path(json(p), w + ".tokenizer"))) bad("bad_field", w + ".tokenizer names a missing file");
  if (has(d, "inputs")) {
    const json& in = d["inputs"];
    if (!in.is_array() || in.size() > 64) bad("bad_field", w + ".inputs must be a list");
    for (size_t i = 0; i < in.size(); ++i) {
      if (in[i].is_string()) continue;
      std::string iw = w + ".inputs[" + std::to_string(i) + "]";
      const json& x = obj(in[i], iw);
      string(need(x, "name", iw), iw + ".name", 64);
      if (has(x, "shape")) {
        bool ok = x["shape"].is_array();
        for (const json& s : ok ? x["shape"] : json::array())
          ok = ok && (s.is_string() || (s.is_number_integer() && (s.is_number_unsigned() || s.get<int64_t>() >= 0)));
        if (!ok) bad("bad_field", iw + ".shape must be a list of sizes or names");
      }
      if (x.contains("dtype")) string(x["dtype"], iw + ".dtype", 32);
    }
  }
  if (has(d, "outputs")) string_list(d["outputs"], w + ".outputs", 64);
  if (has(d, "quantize") && d["quantize"] != "int8") bad("bad_field", w + ".quantize must be null or 'int8'");
  for (const char* k : {"id", "model_type", "compute_precision"})
    if (has(d, k)) string(d[k], w + "." + k, 512);
}

}  // namespace

json read_catalog(const std::string& body) {
  if (body.size() > (16u << 20)) bad("too_large", "catalog is over 16 MiB");
  json d;
  try {
    d = se::parse_json(body, "catalog", "not_json");
  } catch (const se::Error& e) {
    bad(e.code(), e.what());
  }
  obj(d, "catalog", "not_object");
  const json& fv = need(d, "format_version", "catalog");
  if (!fv.is_number_integer() || fv.get<int64_t>() != 1) bad("bad_format_version", "catalog format_version is not 1");
  if (d.contains("targets"))
    for (const std::string& t : string_list(d["targets"], "targets", 64)) name(json(t), "target");
  const json& bbs = obj(need(d, "backbones", "catalog"), "backbones");
  for (auto it = bbs.begin(); it != bbs.end(); ++it) {
    name(json(it.key()), "target");
    const std::string w = "backbones." + it.key();
    backbone(it.value(), w);
    integer(need(it.value(), "version", w), w + ".version", 1, INT64_MAX);
    url(need(it.value(), "url", w), w + ".url");
    if (has(it.value(), "published_at")) number(it.value()["published_at"], w + ".published_at");
    for (const json& f : it.value()["files"]) url(need(f, "url", w + ".files"), w + ".files.url");
  }
  const json& tasks = obj(need(d, "tasks", "catalog"), "tasks");
  for (auto it = tasks.begin(); it != tasks.end(); ++it) {
    name(json(it.key()), "task name");
    const json& per = obj(it.value(), "tasks." + it.key());
    for (auto t = per.begin(); t != per.end(); ++t) {
      name(json(t.key()), "target");
      const std::string w = "tasks." + it.key() + "." + t.key();
      const json& e = obj(t.value(), w);
      integer(need(e, "version", w), w + ".version", 1, INT64_MAX);
      sha(need(e, "sha256", w), w + ".sha256");
      integer(need(e, "bytes", w), w + ".bytes", 0, int64_t(1) << 40);
      sha(need(e, "backbone_fingerprint", w), w + ".backbone_fingerprint", "bad_fingerprint");
      url(need(e, "url", w), w + ".url");
      if (has(e, "dtype") && e["dtype"] != "fp32" && e["dtype"] != "fp16") bad("bad_dtype", w + ".dtype is not fp32/16");
    }
  }
  return d;
}

}  // namespace spartan_cli
