// The task memory file (docs/formats.md "Memory file"): a safetensors file with P, K, Vt, head_weight, head_bias
// (format_version 2: and the recipe tensors its metadata lists) and the `spartan_edge_memory` metadata. Read and
// validated completely before any of it is used; the checks, their order and their error codes follow spartan_formats.memory.read_memory (tests/conformance pins them).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "backbone.h"

namespace se {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;  // fp16 files are widened to float32 on load (the programs' input dtype)
};

struct MemoryFile {
  std::string task;
  std::vector<std::string> label_names;
  bool is_regression = false;
  int64_t num_outputs = 0;
  int64_t max_labels = 0;
  std::string backbone_fingerprint;
  MemoryShape memory_shape;
  std::string dtype;  // "fp32" or "fp16"
  int64_t format_version = 1;             // 2: the recipe program's extra tensors (see tensor_names)
  std::vector<std::string> tensor_names;  // the file's tensors in program input order
  std::map<std::string, Tensor> tensors;
};

// backbone: NULL checks the file on its own; otherwise it must fit that backbone (fingerprint, memory shape,
// max_labels) and may carry the extra tensors the backbone's program takes as inputs.
MemoryFile parse_memory(const uint8_t* data, size_t size, const Backbone* backbone);
MemoryFile read_memory(const std::string& path, const Backbone* backbone);

// The recipe program's `<target>/defaults.safetensors` (docs/formats.md "feeding rule"): the tensors fed for the
// inputs marked "default" that a memory file lacks. A valid safetensors file of finite F32/F16 tensors.
std::map<std::string, Tensor> read_defaults(const std::string& path);

}  // namespace se
