#include "engine.h"

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/platform.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "error.h"

namespace se {

using executorch::aten::ScalarType;
using executorch::extension::from_blob;
using executorch::extension::Module;
using executorch::extension::TensorPtr;
using executorch::runtime::EValue;

namespace {

bool g_log_all = false;

void emit_log(et_timestamp_t, et_pal_log_level_t level, const char* filename, const char*, size_t line,
              const char* message, size_t length) {
  if (!g_log_all && (level == kInfo || level == kDebug)) return;
  std::fprintf(stderr, "executorch %c %s:%zu] %.*s\n", static_cast<char>(level), filename, line,
               static_cast<int>(length), message);
}

const char* error_name(executorch::runtime::Error e) { return executorch::runtime::to_string(e); }

}  // namespace

void configure_runtime_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("SPARTAN_EDGE_ET_LOG");
    g_log_all = env != nullptr && std::strcmp(env, "all") == 0;
    executorch::runtime::register_pal(executorch::runtime::PalImpl::create(emit_log, __FILE__));
  });
}

struct Engine::Program {
  explicit Program(const std::string& path) : module(path, Module::LoadMode::Mmap) {}
  Module module;
};

struct Engine::Inputs {
  std::vector<TensorPtr> memory;  // one per non-token program input, in program order
};

Engine::Engine(Backbone backbone, const std::string& program_path, const std::string& tokenizer_path,
               const std::string& defaults_path)
    : backbone_(std::move(backbone)),
      tokenizer_(Tokenizer::from_file(tokenizer_path, static_cast<size_t>(backbone_.max_seq_length))) {
  configure_runtime_logging();
  for (const ProgramInput& in : backbone_.inputs)
    if (in.name == "input_ids") int32_tokens_ = in.dtype == "int32";
  for (const ProgramInput& in : backbone_.inputs)
    if (in.name == "token_type_ids")
      fail(SE_ERR_UNSUPPORTED, "unsupported_program", "the program takes token_type_ids; this runtime feeds "
                                                      "input_ids and attention_mask (type ids come from [SEP])");
  if (!defaults_path.empty()) {
    defaults_ = read_defaults(defaults_path);
    for (const ProgramInput& in : backbone_.inputs) {  // every default input must be there, of the program's shape
      if (!in.is_default) continue;
      auto it = defaults_.find(in.name);
      if (it == defaults_.end())
        fail(SE_ERR_FORMAT, "tensor_set", "the defaults file " + defaults_path + " has no tensor '" + in.name + "'");
      if (!in.shape.empty() && it->second.shape != in.shape)
        fail(SE_ERR_FORMAT, "tensor_shape", "defaults tensor " + in.name + " does not have the program's shape");
    }
  }
  {
    std::FILE* f = std::fopen(program_path.c_str(), "rb");
    if (f == nullptr) fail(SE_ERR_IO, "io_error", "cannot open program " + program_path);
    std::fclose(f);
  }
  program_ = std::make_unique<Program>(program_path);
  auto err = program_->module.load_forward();
  if (err != executorch::runtime::Error::Ok)
    fail(SE_ERR_RUNTIME, "program_load", "ExecuTorch cannot load 'forward' of " + program_path + ": " +
                                             error_name(err));
  auto meta = program_->module.method_meta("forward");
  if (!meta.ok()) fail(SE_ERR_RUNTIME, "program_load", "no method metadata for 'forward'");
  if (meta->num_inputs() != backbone_.inputs.size())
    fail(SE_ERR_MISMATCH, "program_inputs", "the program takes " + std::to_string(meta->num_inputs()) +
                                                " inputs, the backbone description lists " +
                                                std::to_string(backbone_.inputs.size()));
}

Engine::~Engine() = default;

void Engine::load_memory(const std::string& path, const std::string* task) {
  auto mem = std::make_unique<MemoryFile>(read_memory(path, &backbone_));
  if (task != nullptr && mem->task != *task)
    fail(SE_ERR_MISMATCH, "task_mismatch", "file is for task '" + mem->task + "', not '" + *task + "'");
  auto inputs = std::make_unique<Inputs>();
  for (const ProgramInput& in : backbone_.inputs) {
    if (is_token_input(in.name)) continue;
    // The feeding rule (docs/formats.md): the memory's tensor, else (an input marked "default") the defaults file's.
    Tensor* t = nullptr;
    if (auto it = mem->tensors.find(in.name); it != mem->tensors.end())
      t = &it->second;
    else if (auto d = defaults_.find(in.name); in.is_default && d != defaults_.end())
      t = &d->second;
    if (t == nullptr)
      fail(SE_ERR_FORMAT, "tensor_set",
           "program input " + in.name + " is in neither the memory file " + path + " nor the defaults" +
               (in.is_default ? std::string(" (the engine was opened without the bundle's defaults file)")
                              : std::string(" (the program marks it as not defaulted)")));
    std::vector<executorch::aten::SizesType> sizes(t->shape.begin(), t->shape.end());
    // The tensor borrows the MemoryFile's or the defaults' buffer; both are owned by this engine (and the memory
    // together with its inputs).
    inputs->memory.push_back(from_blob(t->data.data(), sizes, ScalarType::Float));
  }
  memory_ = std::move(mem);  // only now: a refused file leaves the previous memory active
  inputs_ = std::move(inputs);
}

Prediction Engine::classify(const std::string& text, const std::string* pair) {
  if (!memory_) fail(SE_ERR_NOT_FOUND, "no_memory", "no task memory is loaded");
  Prediction p;
  p.input_ids = tokenizer_.encode(text, pair);
  const auto S = static_cast<executorch::aten::SizesType>(p.input_ids.size());
  std::vector<int64_t> mask64(p.input_ids.size(), 1);
  std::vector<int32_t> ids32, mask32;
  std::vector<EValue> args;
  TensorPtr ids_t, mask_t;
  if (int32_tokens_) {
    ids32.assign(p.input_ids.begin(), p.input_ids.end());
    mask32.assign(p.input_ids.size(), 1);
    ids_t = from_blob(ids32.data(), {1, S}, ScalarType::Int);
    mask_t = from_blob(mask32.data(), {1, S}, ScalarType::Int);
  } else {
    ids_t = from_blob(p.input_ids.data(), {1, S}, ScalarType::Long);
    mask_t = from_blob(mask64.data(), {1, S}, ScalarType::Long);
  }
  size_t next_memory = 0;
  for (const ProgramInput& in : backbone_.inputs) {
    if (in.name == "input_ids")
      args.emplace_back(ids_t);
    else if (in.name == "attention_mask")
      args.emplace_back(mask_t);
    else
      args.emplace_back(inputs_->memory[next_memory++]);
  }
  auto t0 = std::chrono::steady_clock::now();
  auto out = program_->module.forward(args);
  p.execute_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!out.ok()) fail(SE_ERR_RUNTIME, "execute", std::string("ExecuTorch forward failed: ") + error_name(out.error()));
  if (out->empty() || !(*out)[0].isTensor()) fail(SE_ERR_RUNTIME, "execute", "the program returned no tensor");
  const auto& logits = (*out)[0].toTensor();
  const size_t n = static_cast<size_t>(memory_->num_outputs);
  if (logits.scalar_type() != ScalarType::Float || static_cast<size_t>(logits.numel()) < n)
    fail(SE_ERR_RUNTIME, "execute", "the program's logits are not float32 with " + std::to_string(n) + " values");
  const float* z = logits.const_data_ptr<float>();
  p.logits.assign(z, z + n);
  if (memory_->is_regression) {
    p.probabilities = p.logits;
  } else {
    float mx = *std::max_element(p.logits.begin(), p.logits.end());
    double sum = 0;
    for (float v : p.logits) sum += std::exp(double(v) - mx);
    for (float v : p.logits) p.probabilities.push_back(static_cast<float>(std::exp(double(v) - mx) / sum));
  }
  return p;
}

}  // namespace se
