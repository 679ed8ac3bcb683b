// The backbone description: what a memory file must match and which inputs the program takes, in which order.
// Read from `GET /backbone/<target>` or from a dist manifest's `backbone` section merged with its target entry.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util.h"

namespace se {

struct MemoryShape {
  int64_t num_layers = 0, num_parents = 0, num_children = 0, top_k = 0, hidden_size = 0;
  double temperature = 0;
  bool operator==(const MemoryShape& o) const {
    return num_layers == o.num_layers && num_parents == o.num_parents && num_children == o.num_children &&
           top_k == o.top_k && hidden_size == o.hidden_size && temperature == o.temperature;
  }
  std::string str() const;
};

MemoryShape parse_memory_shape(const json& doc, const std::string& what);

struct ProgramInput {
  std::string name;
  std::string dtype;           // "int64", "int32", "float32" ("" when the description gives only names)
  std::vector<int64_t> shape;  // fixed dims; -1 for a symbolic one ("seq"); empty when not given
  bool is_default = false;     // "default": true: fed from the bundle's defaults file when a memory lacks it
};

struct Backbone {
  std::string fingerprint;
  MemoryShape memory_shape;
  int64_t max_seq_length = 0;
  int64_t max_labels = 0;
  std::string quantize;             // "" or "int8"
  std::vector<ProgramInput> inputs;  // program input order
  json raw;                          // the description as read (for state files)
};

Backbone parse_backbone(const json& doc);

// DIST/manifest.json, target T: the backbone description, the program and tokenizer paths, a task's memory path.
struct Bundle {
  std::string dist;
  std::string target;
  json manifest;
  Backbone backbone;
  std::string program_path;
  std::string tokenizer_path;
  std::string defaults_path;  // the target's "defaults" (manifest format_version 2); "" for a plain bundle
  std::string memory_path(const std::string& task) const;
};

Bundle read_bundle(const std::string& dist_dir, const std::string& target);

// Names of the token inputs the engine makes itself; every other program input comes from the memory file.
bool is_token_input(const std::string& name);

}  // namespace se
