// The C ABI (include/spartan_edge.h) over se::Engine / se::Tokenizer: catches every C++ exception at the border
// and turns it into se_status + a per-thread message and code.
#include <cstring>
#include <new>
#include <optional>
#include <string>

#pragma GCC visibility push(default)
#include "spartan_edge.h"
#pragma GCC visibility pop

#include "backbone.h"
#include "engine.h"
#include "error.h"
#include "memory_file.h"
#include "tokenizer.h"

struct se_tokenizer {
  se::Tokenizer tokenizer;
};

struct se_engine {
  std::unique_ptr<se::Engine> engine;
  std::optional<se::Bundle> bundle;  // set by se_engine_open_bundle
  double last_execute_ms = 0;
};

namespace {

thread_local std::string g_message;
thread_local std::string g_code;

se_status set_error(se_status status, const std::string& code, const std::string& message) {
  g_message = message;
  g_code = code;
  return status;
}

template <class F>
se_status guard(F&& f) {
  try {
    f();
    g_message.clear();
    g_code.clear();
    return SE_OK;
  } catch (const se::Error& e) {
    return set_error(e.status(), e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return set_error(SE_ERR_RUNTIME, "out_of_memory", "out of memory");
  } catch (const std::exception& e) {
    return set_error(SE_ERR_RUNTIME, "internal", e.what());
  }
}

void need_arg(const void* p, const char* name) {
  if (p == nullptr) se::fail(SE_ERR_ARGUMENT, "null_argument", std::string(name) + " is NULL");
}

void copy_out(const std::vector<int64_t>& ids, int64_t* out, size_t capacity, size_t* num) {
  if (num != nullptr) *num = ids.size();
  if (out != nullptr) std::memcpy(out, ids.data(), std::min(ids.size(), capacity) * sizeof(int64_t));
  if (out != nullptr && ids.size() > capacity)
    se::fail(SE_ERR_ARGUMENT, "buffer_too_small", std::to_string(ids.size()) + " ids do not fit a buffer of " +
                                                      std::to_string(capacity));
}

}  // namespace

extern "C" {

int se_abi_version(void) { return SE_ABI_VERSION; }

const char* se_status_name(se_status status) {
  switch (status) {
    case SE_OK: return "ok";
    case SE_ERR_ARGUMENT: return "argument";
    case SE_ERR_IO: return "io";
    case SE_ERR_FORMAT: return "format";
    case SE_ERR_MISMATCH: return "mismatch";
    case SE_ERR_INTEGRITY: return "integrity";
    case SE_ERR_UNSUPPORTED: return "unsupported";
    case SE_ERR_NETWORK: return "network";
    case SE_ERR_RUNTIME: return "runtime";
    case SE_ERR_NOT_FOUND: return "not_found";
  }
  return "unknown";
}

const char* se_last_error(void) { return g_message.c_str(); }
const char* se_last_error_code(void) { return g_code.c_str(); }

se_status se_tokenizer_open(const char* tokenizer_json_path, size_t max_length, se_tokenizer** out) {
  return guard([&] {
    need_arg(tokenizer_json_path, "tokenizer_json_path");
    need_arg(out, "out");
    *out = nullptr;
    auto t = std::make_unique<se_tokenizer>(se_tokenizer{se::Tokenizer::from_file(tokenizer_json_path, max_length)});
    *out = t.release();
  });
}

void se_tokenizer_free(se_tokenizer* tokenizer) { delete tokenizer; }

se_status se_tokenizer_encode(const se_tokenizer* tokenizer, const char* text, const char* text_pair, int64_t* ids,
                              size_t ids_capacity, size_t* num_ids) {
  return guard([&] {
    need_arg(tokenizer, "tokenizer");
    need_arg(text, "text");
    std::string pair = text_pair ? text_pair : "";
    copy_out(tokenizer->tokenizer.encode(text, text_pair ? &pair : nullptr), ids, ids_capacity, num_ids);
  });
}

se_status se_engine_open(const char* backbone_json, const char* program_path, const char* tokenizer_json_path,
                         se_engine** out) {
  return se_engine_open_with_defaults(backbone_json, program_path, tokenizer_json_path, nullptr, out);
}

se_status se_engine_open_with_defaults(const char* backbone_json, const char* program_path,
                                       const char* tokenizer_json_path, const char* defaults_path, se_engine** out) {
  return guard([&] {
    need_arg(backbone_json, "backbone_json");
    need_arg(program_path, "program_path");
    need_arg(tokenizer_json_path, "tokenizer_json_path");
    need_arg(out, "out");
    *out = nullptr;
    se::Backbone b = se::parse_backbone(se::parse_json(backbone_json, "backbone description"));
    auto e = std::make_unique<se_engine>();
    e->engine = std::make_unique<se::Engine>(std::move(b), program_path, tokenizer_json_path,
                                             defaults_path ? defaults_path : "");
    *out = e.release();
  });
}

se_status se_engine_open_bundle(const char* dist_dir, const char* target, se_engine** out) {
  return guard([&] {
    need_arg(dist_dir, "dist_dir");
    need_arg(target, "target");
    need_arg(out, "out");
    *out = nullptr;
    se::Bundle bundle = se::read_bundle(dist_dir, target);
    auto e = std::make_unique<se_engine>();
    e->engine = std::make_unique<se::Engine>(bundle.backbone, bundle.program_path, bundle.tokenizer_path,
                                             bundle.defaults_path);
    e->bundle = std::move(bundle);
    *out = e.release();
  });
}

void se_engine_free(se_engine* engine) { delete engine; }

se_status se_engine_load_memory(se_engine* engine, const char* memory_path) {
  return guard([&] {
    need_arg(engine, "engine");
    need_arg(memory_path, "memory_path");
    engine->engine->load_memory(memory_path);
  });
}

se_status se_engine_load_bundle_task(se_engine* engine, const char* task) {
  return guard([&] {
    need_arg(engine, "engine");
    need_arg(task, "task");
    if (!engine->bundle)
      se::fail(SE_ERR_ARGUMENT, "not_a_bundle", "the engine was not opened with se_engine_open_bundle");
    std::string name = task;
    engine->engine->load_memory(engine->bundle->memory_path(name), &name);
  });
}

se_status se_engine_task(const se_engine* engine, const char** task_name, size_t* num_outputs, int* is_regression) {
  return guard([&] {
    need_arg(engine, "engine");
    const se::MemoryFile* m = engine->engine->memory();
    if (m == nullptr) se::fail(SE_ERR_NOT_FOUND, "no_memory", "no task memory is loaded");
    if (task_name) *task_name = m->task.c_str();
    if (num_outputs) *num_outputs = static_cast<size_t>(m->num_outputs);
    if (is_regression) *is_regression = m->is_regression ? 1 : 0;
  });
}

const char* se_engine_label(const se_engine* engine, size_t index) {
  if (engine == nullptr || engine->engine->memory() == nullptr) return nullptr;
  const se::MemoryFile* m = engine->engine->memory();
  if (m->is_regression || index >= m->label_names.size()) return nullptr;
  return m->label_names[index].c_str();
}

se_status se_engine_classify(se_engine* engine, const char* text, const char* text_pair, float* logits,
                             float* probabilities, size_t outputs_capacity, size_t* num_outputs, int64_t* input_ids,
                             size_t ids_capacity, size_t* num_ids) {
  return guard([&] {
    need_arg(engine, "engine");
    need_arg(text, "text");
    std::string pair = text_pair ? text_pair : "";
    se::Prediction p = engine->engine->classify(text, text_pair ? &pair : nullptr);
    engine->last_execute_ms = p.execute_ms;
    if (num_outputs) *num_outputs = p.logits.size();
    if ((logits || probabilities) && p.logits.size() > outputs_capacity)
      se::fail(SE_ERR_ARGUMENT, "buffer_too_small", std::to_string(p.logits.size()) + " outputs do not fit a "
                                                    "buffer of " + std::to_string(outputs_capacity));
    if (logits) std::memcpy(logits, p.logits.data(), p.logits.size() * sizeof(float));
    if (probabilities) std::memcpy(probabilities, p.probabilities.data(), p.probabilities.size() * sizeof(float));
    copy_out(p.input_ids, input_ids, ids_capacity, num_ids);
  });
}

double se_engine_last_execute_ms(const se_engine* engine) {
  return engine == nullptr ? -1.0 : engine->last_execute_ms;
}

size_t se_engine_max_length(const se_engine* engine) {
  return engine == nullptr ? 0 : engine->engine->tokenizer().max_length();
}

se_status se_validate_task_memory(const char* memory_path, const char* backbone_json, const char* task) {
  return guard([&] {
    need_arg(memory_path, "memory_path");
    se::MemoryFile m;
    if (backbone_json == nullptr) {
      m = se::read_memory(memory_path, nullptr);
    } else {
      se::Backbone b = se::parse_backbone(se::parse_json(backbone_json, "backbone description"));
      m = se::read_memory(memory_path, &b);
    }
    if (task != nullptr && m.task != task)
      se::fail(SE_ERR_MISMATCH, "task_mismatch", "file is for task '" + m.task + "', not '" + task + "'");
  });
}

se_status se_validate_memory(const char* memory_path, const char* backbone_json) {
  return se_validate_task_memory(memory_path, backbone_json, nullptr);
}

}  // extern "C"
