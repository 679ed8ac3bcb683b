// One loaded backbone program (ExecuTorch Module) + its tokenizer, and the active task memory fed as inputs.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backbone.h"
#include "memory_file.h"
#include "tokenizer.h"

namespace se {

struct Prediction {
  std::vector<float> logits;         // num_outputs values
  std::vector<float> probabilities;  // softmax of the logits; the raw value for a regression task
  std::vector<int64_t> input_ids;
  double execute_ms = 0;  // the program call alone (ExecuTorch Module::forward)
};

class Engine {
 public:
  // defaults_path: the bundle's defaults file (recipe program), "" for none.
  Engine(Backbone backbone, const std::string& program_path, const std::string& tokenizer_path,
         const std::string& defaults_path = "");
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validate `path` completely (and, with `task`, that it is that task's) and make it the active memory; on any
  // failure the previous one stays active.
  void load_memory(const std::string& path, const std::string* task = nullptr);
  Prediction classify(const std::string& text, const std::string* pair);

  const Backbone& backbone() const { return backbone_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  const MemoryFile* memory() const { return memory_.get(); }

 private:
  struct Program;  // the ExecuTorch Module (kept out of this header)
  struct Inputs;   // the memory tensors as ExecuTorch tensors, in program input order
  Backbone backbone_;
  Tokenizer tokenizer_;
  std::unique_ptr<Program> program_;
  std::map<std::string, Tensor> defaults_;  // read once at open; fed for default inputs a memory lacks
  std::unique_ptr<MemoryFile> memory_;
  std::unique_ptr<Inputs> inputs_;
  bool int32_tokens_ = false;
};

// Route the ExecuTorch runtime's log lines: Info and Debug dropped (cpuinfo's "Failed to open midr file" on x86
// and similar), warnings and errors to stderr. SPARTAN_EDGE_ET_LOG=all keeps everything. Called by every Engine.
void configure_runtime_logging();

}  // namespace se
