#include "backbone.h"

#include <sstream>

#include "error.h"

namespace se {

std::string MemoryShape::str() const {
  std::ostringstream s;
  s << "{num_layers " << num_layers << ", num_parents " << num_parents << ", num_children " << num_children
    << ", top_k " << top_k << ", temperature " << temperature << ", hidden_size " << hidden_size << "}";
  return s.str();
}

MemoryShape parse_memory_shape(const json& doc, const std::string& what) {
  // Same checks and order as spartan_formats.backbone.read_memory_shape (the conformance vectors pin the codes).
  if (!doc.is_object()) fail(SE_ERR_FORMAT, "bad_field", what + " must be a JSON object");
  MemoryShape m;
  const int64_t big = 1 << 20;
  m.num_layers = need_int(doc, "num_layers", what, 1, big);
  m.num_parents = need_int(doc, "num_parents", what, 1, big);
  m.num_children = need_int(doc, "num_children", what, 1, big);
  m.top_k = need_int(doc, "top_k", what, 1, big);
  m.hidden_size = need_int(doc, "hidden_size", what, 1, big);
  m.temperature = need_number(doc, "temperature", what);
  if (m.temperature <= 0) fail(SE_ERR_FORMAT, "bad_field", what + ".temperature must be positive");
  if (m.top_k > m.num_parents)
    fail(SE_ERR_FORMAT, "bad_field", what + ".top_k " + std::to_string(m.top_k) + " exceeds num_parents " +
                                         std::to_string(m.num_parents));
  return m;
}

bool is_token_input(const std::string& name) {
  return name == "input_ids" || name == "attention_mask" || name == "token_type_ids";
}

static ProgramInput parse_input(const json& e, size_t i) {
  ProgramInput in;
  std::string what = "backbone.inputs[" + std::to_string(i) + "]";
  if (e.is_string()) {  // older descriptions list names only
    in.name = e.get<std::string>();
  } else {
    in.name = need_string(e, "name", what);
    if (e.contains("dtype")) in.dtype = need_string(e, "dtype", what);
    if (e.contains("shape")) {
      const json& s = e["shape"];
      if (!s.is_array()) fail(SE_ERR_FORMAT, "bad_field", what + ".shape must be a list");
      for (const json& d : s) in.shape.push_back(d.is_number_integer() ? d.get<int64_t>() : -1);
    }
    in.is_default = e.contains("default") && e["default"] == true;
  }
  if (in.name.empty() || in.name.size() > 128) fail(SE_ERR_FORMAT, "bad_field", what + " has a bad name");
  return in;
}

Backbone parse_backbone(const json& doc) {
  const std::string what = "backbone";
  Backbone b;
  b.raw = doc;
  b.fingerprint = need_string(doc, "fingerprint", what);
  if (!is_sha256(b.fingerprint))
    fail(SE_ERR_FORMAT, "bad_fingerprint", "backbone fingerprint '" + b.fingerprint + "' is not 64 lowercase hex");
  b.memory_shape = parse_memory_shape(need(doc, "memory_shape", what), "backbone.memory_shape");
  b.max_seq_length = need_int(doc, "max_seq_length", what, 2, 1 << 16);
  b.max_labels = need_int(doc, "max_labels", what, 1, 1024);
  if (doc.contains("quantize") && doc["quantize"].is_string()) b.quantize = doc["quantize"].get<std::string>();
  const json& inputs = need(doc, "inputs", what);
  if (!inputs.is_array() || inputs.empty()) fail(SE_ERR_FORMAT, "bad_field", "backbone.inputs must be a list");
  for (size_t i = 0; i < inputs.size(); ++i) b.inputs.push_back(parse_input(inputs[i], i));
  if (b.inputs[0].name != "input_ids")
    fail(SE_ERR_UNSUPPORTED, "unsupported_program", "the program's first input is '" + b.inputs[0].name +
                                                        "', not input_ids");
  return b;
}

static std::string bundle_file(const std::string& dist, const json& rel, const std::string& what) {
  if (!rel.is_string() || !is_relative_path(rel.get<std::string>()))
    fail(SE_ERR_FORMAT, "bad_path", what + " " + rel.dump() + " is not a relative path of plain names");
  return join_path(dist, rel.get<std::string>());
}

Bundle read_bundle(const std::string& dist_dir, const std::string& target) {
  if (!is_name(target)) fail(SE_ERR_ARGUMENT, "bad_name", "target '" + target + "' is not a valid name");
  Bundle b;
  b.dist = dist_dir;
  b.target = target;
  std::string path = join_path(dist_dir, "manifest.json");
  b.manifest = parse_json(read_text(path), path);
  const json& m = b.manifest;
  if (!m.is_object() || !m.contains("format_version") || (m["format_version"] != 1 && m["format_version"] != 2))
    fail(SE_ERR_FORMAT, "bad_format_version", path + ": not a format_version 1 or 2 dist manifest");
  const json& targets = need(m, "targets", "manifest");
  if (!targets.is_object() || !targets.contains(target))
    fail(SE_ERR_NOT_FOUND, "unknown_target", path + " has no target '" + target + "'");
  const json& t = targets[target];
  json desc = need(m, "backbone", "manifest");
  if (!desc.is_object() || !t.is_object()) fail(SE_ERR_FORMAT, "bad_field", path + ": backbone/target not objects");
  for (auto it = t.begin(); it != t.end(); ++it) desc[it.key()] = it.value();  // target fields win
  b.backbone = parse_backbone(desc);
  b.program_path = bundle_file(dist_dir, need(t, "program", "target"), "program");
  const json* tok = nullptr;  // the tokenizer.json among the target's tokenizer files
  if (t.contains("tokenizer") && t["tokenizer"].is_array())
    for (const json& p : t["tokenizer"]) {
      if (!p.is_string()) continue;
      const std::string s = p.get<std::string>();
      if (s == "tokenizer.json" || (s.size() > 15 && s.compare(s.size() - 15, 15, "/tokenizer.json") == 0)) tok = &p;
    }
  b.tokenizer_path = bundle_file(dist_dir, tok ? *tok : json(target + "/tokenizer.json"), "tokenizer");
  if (t.contains("defaults")) b.defaults_path = bundle_file(dist_dir, t["defaults"], "defaults");
  return b;
}

std::string Bundle::memory_path(const std::string& task) const {
  if (!is_name(task)) fail(SE_ERR_ARGUMENT, "bad_name", "task '" + task + "' is not a valid name");
  const json& tasks = need(manifest, "tasks", "manifest");
  if (!tasks.is_object() || !tasks.contains(task))
    fail(SE_ERR_NOT_FOUND, "unknown_task", "the bundle has no task '" + task + "'");
  const json& files = need(tasks[task], "files", "manifest.tasks." + task);
  if (!files.is_object() || !files.contains(target))
    fail(SE_ERR_NOT_FOUND, "unknown_task", "task '" + task + "' has no memory for target " + target);
  return bundle_file(dist, need(files[target], "path", "memory entry"), "memory path");
}

}  // namespace se
