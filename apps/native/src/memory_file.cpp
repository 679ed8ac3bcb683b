#include "memory_file.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <tuple>

#include "error.h"

namespace se {

namespace {

constexpr uint64_t kMaxHeaderBytes = 16u << 20;
constexpr uint64_t kMaxMemoryBytes = 256u << 20;
constexpr int64_t kMaxLabels = 1024;
const char* const kMetadataKey = "spartan_edge_memory";
const char* const kTensors[] = {"P", "K", "Vt", "head_weight", "head_bias"};
// format_version 2 (the recipe program) may add some of these, in this order, after the five above.
const char* const kRecipeTensors[] = {"ln_weight", "ln_bias", "head_dense_weight", "head_dense_bias", "head_skip"};
constexpr int64_t kMemoryFormatVersion = 1, kRecipeFormatVersion = 2;

size_t itemsize(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {{"F32", 4}, {"F16", 2}, {"F64", 8}, {"BF16", 2}, {"I8", 1},
                                                      {"U8", 1},  {"I16", 2}, {"I32", 4}, {"I64", 8},  {"BOOL", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

// IEEE half -> float by hand: C++17 has no half type and this is the one conversion the runtime needs.
float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400) == 0);
    bits = sign | (uint32_t(112 - e) << 23) | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

bool is_uint(const json& v) { return v.is_number_integer() && (v.is_number_unsigned() || v.get<int64_t>() >= 0); }

size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

struct Entry {
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

Entry parse_entry(const std::string& name, const json& e) {
  if (!e.is_object() || e.size() != 3 || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    fail(SE_ERR_FORMAT, "bad_tensor_entry", "tensor '" + name + "' entry must have exactly dtype, shape, data_offsets");
  Entry out;
  const json &dtype = e["dtype"], &shape = e["shape"], &offs = e["data_offsets"];
  if (!dtype.is_string() || itemsize(dtype.get<std::string>()) == 0)
    fail(SE_ERR_FORMAT, "bad_tensor_entry", "tensor '" + name + "' has unknown dtype " + dtype.dump());
  out.dtype = dtype.get<std::string>();
  if (!shape.is_array() || shape.size() > 8)
    fail(SE_ERR_FORMAT, "bad_tensor_entry", "tensor '" + name + "' shape must be a list of non-negative integers");
  unsigned __int128 count = 1;
  for (const json& d : shape) {
    if (!is_uint(d) || d.get<uint64_t>() > (uint64_t(1) << 40))
      fail(SE_ERR_FORMAT, "bad_tensor_entry", "tensor '" + name + "' shape must be a list of non-negative integers");
    out.shape.push_back(d.get<int64_t>());
    count *= d.get<uint64_t>();
  }
  if (!offs.is_array() || offs.size() != 2 || !is_uint(offs[0]) || !is_uint(offs[1]) ||
      offs[0].get<uint64_t>() > offs[1].get<uint64_t>())
    fail(SE_ERR_FORMAT, "bad_tensor_entry", "tensor '" + name + "' data_offsets must be [begin, end], begin <= end");
  out.begin = offs[0].get<uint64_t>();
  out.end = offs[1].get<uint64_t>();
  if (count * itemsize(out.dtype) != (unsigned __int128)(out.end - out.begin))
    fail(SE_ERR_FORMAT, "bad_tensor_entry", "tensor '" + name + "': " + std::to_string(out.end - out.begin) +
                                                " bytes for shape " + shape_str(out.shape) + " of " + out.dtype);
  return out;
}

void read_metadata(const std::map<std::string, std::string>& meta, MemoryFile& m) {
  auto it = meta.find(kMetadataKey);
  if (it == meta.end())
    fail(SE_ERR_FORMAT, "metadata_missing",
         std::string("no '") + kMetadataKey + "' metadata: not a SPARTAN Edge memory file");
  json doc = parse_json(it->second, std::string("'") + kMetadataKey + "' metadata", "metadata_not_json");
  if (!doc.is_object())
    fail(SE_ERR_FORMAT, "memory_metadata_not_object", std::string("'") + kMetadataKey + "' metadata is not an object");
  const std::string w = "memory metadata";
  const json& fv = need(doc, "format_version", w);
  if (!fv.is_number_integer() ||
      (fv.get<int64_t>() != kMemoryFormatVersion && fv.get<int64_t>() != kRecipeFormatVersion))
    fail(SE_ERR_FORMAT, "bad_format_version", w + " has format_version " + fv.dump().substr(0, 60) +
                                                  "; this reader reads 1, 2");
  m.format_version = fv.get<int64_t>();
  m.tensor_names.assign(std::begin(kTensors), std::end(kTensors));
  if (m.format_version == kRecipeFormatVersion) {
    const json& names = need(doc, "tensors", w);
    if (!names.is_array() || names.size() > 16) fail(SE_ERR_FORMAT, "bad_field", "tensors must be a list of strings");
    std::vector<std::string> listed, extra, ordered;
    for (const json& n : names) {
      if (!n.is_string() || utf8_length(n.get<std::string>()) > 256)
        fail(SE_ERR_FORMAT, "bad_field", "tensors must be strings of at most 256 characters");
      listed.push_back(n.get<std::string>());
    }
    const size_t base = std::size(kTensors);
    bool ok = listed.size() > base && std::equal(std::begin(kTensors), std::end(kTensors), listed.begin());
    if (ok) {
      extra.assign(listed.begin() + base, listed.end());
      for (const char* r : kRecipeTensors)
        if (std::find(extra.begin(), extra.end(), r) != extra.end()) ordered.push_back(r);
      ok = extra == ordered;
    }
    if (!ok)
      fail(SE_ERR_FORMAT, "bad_field", "a format_version 2 memory lists its tensors as P, K, Vt, head_weight, "
                                       "head_bias then some of ln_weight, ln_bias, head_dense_weight, "
                                       "head_dense_bias, head_skip in that order, not " + names.dump().substr(0, 200));
    m.tensor_names = listed;
  }
  const json& task = need(doc, "task", w);
  if (!task.is_string() || !is_name(task.get<std::string>()))
    fail(SE_ERR_FORMAT, "bad_name", "task " + task.dump().substr(0, 80) + " is not a valid name");
  m.task = task.get<std::string>();
  const json& dtype = need(doc, "dtype", w);
  if (!dtype.is_string() || (dtype != "fp32" && dtype != "fp16"))
    fail(SE_ERR_FORMAT, "bad_dtype", "metadata dtype " + dtype.dump().substr(0, 60) + " is not one of fp16, fp32");
  m.dtype = dtype.get<std::string>();
  const json& fp = need(doc, "backbone_fingerprint", w);
  if (!fp.is_string() || !is_sha256(fp.get<std::string>()))
    fail(SE_ERR_FORMAT, "bad_fingerprint", "backbone fingerprint " + fp.dump().substr(0, 80) +
                                               " is not 64 lowercase hex digits");
  m.backbone_fingerprint = fp.get<std::string>();
  m.memory_shape = parse_memory_shape(need(doc, "memory_shape", w), "memory_shape");
  const json& labels = need(doc, "label_names", w);
  if (!labels.is_array() || labels.size() > size_t(kMaxLabels))
    fail(SE_ERR_FORMAT, "bad_field", "label_names must be a list of strings");
  for (const json& l : labels) {
    if (!l.is_string() || utf8_length(l.get<std::string>()) > 256)
      fail(SE_ERR_FORMAT, "bad_field", "label_names must be strings of at most 256 characters");
    m.label_names.push_back(l.get<std::string>());
  }
  m.is_regression = need_bool(doc, "is_regression", w);
  m.num_outputs = need_int(doc, "num_outputs", "num_outputs", 1, kMaxLabels);
  if (m.is_regression && m.num_outputs != 1)
    fail(SE_ERR_FORMAT, "bad_field", "a regression task has num_outputs 1, not " + std::to_string(m.num_outputs));
  if (!m.is_regression && (m.label_names.size() < 2 || size_t(m.num_outputs) != m.label_names.size()))
    fail(SE_ERR_FORMAT, "bad_field", "a classification task needs >= 2 label_names and num_outputs equal to their "
                                     "count");
  m.max_labels = need_int(doc, "max_labels", "max_labels", 1, kMaxLabels);
  if (m.num_outputs > m.max_labels)
    fail(SE_ERR_FORMAT, "too_many_outputs", std::to_string(m.num_outputs) + " outputs is more than max_labels " +
                                                std::to_string(m.max_labels));
  const json& metric = need(doc, "metric", w);
  if (!metric.is_string() || utf8_length(metric.get<std::string>()) > 64)
    fail(SE_ERR_FORMAT, "bad_field", "metric must be a string of at most 64 characters");
}

struct Safetensors {
  std::map<std::string, Entry> entries;
  std::map<std::string, std::string> meta;
  const uint8_t* payload = nullptr;  // borrows the caller's buffer
};

Safetensors parse_safetensors(const uint8_t* data, size_t size) {
  // --- safetensors layer: u64 LE header length, JSON header, payload tiled exactly by the tensors
  if (size < 8) fail(SE_ERR_FORMAT, "truncated", "file is " + std::to_string(size) + " bytes, shorter than 8");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n == 0 || n > kMaxHeaderBytes || n > size - 8)
    fail(SE_ERR_FORMAT, "bad_header_length", "header length " + std::to_string(n) + " does not fit a " +
                                                 std::to_string(size) + "-byte file");
  json header = parse_json(std::string(reinterpret_cast<const char*>(data + 8), n), "safetensors header",
                           "header_not_json");
  if (!header.is_object()) fail(SE_ERR_FORMAT, "header_not_object", "safetensors header is not a JSON object");
  std::map<std::string, std::string> meta;
  if (header.contains("__metadata__")) {
    const json& mj = header["__metadata__"];
    if (!mj.is_object()) fail(SE_ERR_FORMAT, "metadata_not_object", "__metadata__ must be an object of strings");
    for (auto it = mj.begin(); it != mj.end(); ++it) {
      if (!it.value().is_string())
        fail(SE_ERR_FORMAT, "metadata_not_object", "__metadata__ must be an object whose values are strings");
      meta[it.key()] = it.value().get<std::string>();
    }
    header.erase("__metadata__");
  }
  const uint64_t payload_size = size - 8 - n;
  Safetensors out;
  out.payload = data + 8 + n;
  out.meta = std::move(meta);
  std::map<std::string, Entry>& entries = out.entries;
  for (auto it = header.begin(); it != header.end(); ++it) entries[it.key()] = parse_entry(it.key(), it.value());
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> spans;
  for (const auto& [name, e] : entries) spans.emplace_back(e.begin, e.end, name);
  std::sort(spans.begin(), spans.end());
  uint64_t pos = 0;
  for (const auto& [begin, end, name] : spans) {
    if (begin != pos)
      fail(SE_ERR_FORMAT, "bad_tensor_entry", "tensor " + name + " starts at " + std::to_string(begin) +
                                                  ", expected " + std::to_string(pos) +
                                                  " (tensors must tile the payload without gaps or overlaps)");
    pos = end;
  }
  if (pos > payload_size)
    fail(SE_ERR_FORMAT, "truncated", "tensors need " + std::to_string(pos) + " payload bytes, the file has " +
                                         std::to_string(payload_size));
  if (pos != payload_size)
    fail(SE_ERR_FORMAT, "trailing_bytes", std::to_string(payload_size - pos) + " bytes after the last tensor");
  return out;
}

// A tensor's values widened to float32 (the programs' input dtype); F32 or F16 only (the caller checks).
Tensor to_tensor(const Entry& e, const uint8_t* payload) {
  Tensor t;
  t.shape = e.shape;
  size_t count = (e.end - e.begin) / itemsize(e.dtype);
  t.data.resize(count);
  const uint8_t* p = payload + e.begin;
  if (e.dtype == "F32") {
    std::memcpy(t.data.data(), p, count * 4);  // safetensors is little-endian, as are the targets
  } else {
    for (size_t i = 0; i < count; ++i) t.data[i] = half_to_float(uint16_t(p[2 * i] | (p[2 * i + 1] << 8)));
  }
  return t;
}

}  // namespace

MemoryFile parse_memory(const uint8_t* data, size_t size, const Backbone* backbone) {
  if (size > kMaxMemoryBytes)
    fail(SE_ERR_FORMAT, "too_large", std::to_string(size) + " bytes is over the memory file limit");
  Safetensors st = parse_safetensors(data, size);
  std::map<std::string, Entry>& entries = st.entries;
  const std::map<std::string, std::string>& meta = st.meta;
  const uint8_t* payload = st.payload;

  // --- memory layer
  MemoryFile m;
  read_metadata(meta, m);
  // Exactly the five, or for format_version 2 exactly the ones its metadata lists (spartan_formats.memory).
  const std::set<std::string> names(m.tensor_names.begin(), m.tensor_names.end());
  std::set<std::string> have_set;
  for (const auto& [name, e] : entries) have_set.insert(name);
  if (have_set != names) {
    std::string have, listed;
    for (const auto& [name, e] : entries) have += (have.empty() ? "" : ", ") + name;
    for (const std::string& n : m.tensor_names) listed += (listed.empty() ? "" : ", ") + n;
    fail(SE_ERR_FORMAT, "tensor_set", "tensors must be exactly [" + listed + "], got [" + have + "]");
  }
  const std::string want_dt = m.dtype == "fp16" ? "F16" : "F32";
  for (const std::string& name : m.tensor_names)
    if (entries[name].dtype != want_dt)
      fail(SE_ERR_FORMAT, "tensor_dtype", "tensor " + name + " is " + entries[name].dtype + ", metadata says " +
                                              m.dtype);
  const MemoryShape& s = m.memory_shape;
  const int64_t L = s.num_layers, E = s.num_parents, C = s.num_children, H = s.hidden_size, O = m.max_labels;
  const int64_t n_ln = entries.count("ln_weight") && !entries["ln_weight"].shape.empty()
                           ? entries["ln_weight"].shape[0] : 0;
  const std::vector<std::pair<std::string, std::vector<int64_t>>> want = {
      {"P", {L, E, H}},         {"K", {L, E * C, H}},   {"Vt", {L, H, E * C}},         {"head_weight", {O, H}},
      {"head_bias", {O}},       {"ln_weight", {n_ln, H}}, {"ln_bias", {n_ln, H}},       {"head_dense_weight", {H, H}},
      {"head_dense_bias", {H}}, {"head_skip", {1}}};
  for (const auto& [name, shape] : want)
    if (names.count(name) && entries[name].shape != shape)
      fail(SE_ERR_FORMAT, "tensor_shape", "tensor " + name + " has shape " + shape_str(entries[name].shape) +
                                              ", the metadata says " + shape_str(shape));
  for (const auto& [name, e] : entries) m.tensors[name] = to_tensor(e, payload);
  for (const std::string& name : m.tensor_names)
    for (float v : m.tensors[name].data)
      if (!std::isfinite(v)) fail(SE_ERR_FORMAT, "not_finite", "tensor " + name + " has NaN or infinite values");
  const auto& hw = m.tensors["head_weight"].data;
  const auto& hb = m.tensors["head_bias"].data;
  bool padded_zero = true;
  for (size_t i = size_t(m.num_outputs * H); i < hw.size(); ++i) padded_zero = padded_zero && hw[i] == 0.0f;
  for (size_t i = size_t(m.num_outputs); i < hb.size(); ++i) padded_zero = padded_zero && hb[i] == 0.0f;
  if (!padded_zero)
    fail(SE_ERR_FORMAT, "bad_padding", "head rows from num_outputs (" + std::to_string(m.num_outputs) +
                                           ") to max_labels (" + std::to_string(O) + ") must be zero");
  if (backbone != nullptr) {
    if (m.backbone_fingerprint != backbone->fingerprint)
      fail(SE_ERR_MISMATCH, "fingerprint_mismatch", "memory was made for backbone " + m.backbone_fingerprint +
                                                        ", not " + backbone->fingerprint);
    const MemoryShape& b = backbone->memory_shape;
    const std::tuple<const char*, double, double> keys[] = {
        {"num_layers", s.num_layers, b.num_layers},       {"num_parents", s.num_parents, b.num_parents},
        {"num_children", s.num_children, b.num_children}, {"top_k", s.top_k, b.top_k},
        {"hidden_size", s.hidden_size, b.hidden_size},    {"temperature", s.temperature, b.temperature}};
    for (const auto& [k, have, need_v] : keys)
      if (have != need_v)
        fail(SE_ERR_MISMATCH, "memory_shape_mismatch", std::string("memory_shape.") + k + " is " +
                                                           json(have).dump() + ", the backbone's program needs " +
                                                           json(need_v).dump());
    if (m.max_labels != backbone->max_labels)
      fail(SE_ERR_MISMATCH, "max_labels_mismatch", "memory has max_labels " + std::to_string(m.max_labels) +
                                                       ", the backbone's program takes " +
                                                       std::to_string(backbone->max_labels));
    // A recipe tensor must be an input of the program (a plain program has none of them), of the program's shape.
    const std::set<std::string> recipe(std::begin(kRecipeTensors), std::end(kRecipeTensors));
    for (const std::string& name : m.tensor_names) {
      auto in = std::find_if(backbone->inputs.begin(), backbone->inputs.end(),
                             [&](const ProgramInput& i) { return i.name == name; });
      if (in == backbone->inputs.end()) {
        if (!backbone->inputs.empty() && recipe.count(name))
          fail(SE_ERR_FORMAT, "tensor_set", "tensor " + name + " is not an input of the backbone's program");
        continue;
      }
      if (!in->shape.empty() && m.tensors[name].shape != in->shape)
        fail(SE_ERR_FORMAT, "tensor_shape", "tensor " + name + " has shape " + shape_str(m.tensors[name].shape) +
                                                ", the program takes " + shape_str(in->shape));
    }
  }
  return m;
}

MemoryFile read_memory(const std::string& path, const Backbone* backbone) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) fail(SE_ERR_IO, "io_error", "cannot open memory file " + path);
  auto size = static_cast<uint64_t>(f.tellg());
  if (size > kMaxMemoryBytes)
    fail(SE_ERR_FORMAT, "too_large", std::to_string(size) + " bytes is over the memory file limit");
  std::vector<uint8_t> data = read_file(path);
  return parse_memory(data.data(), data.size(), backbone);
}

std::map<std::string, Tensor> read_defaults(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) fail(SE_ERR_IO, "io_error", "cannot open the bundle's defaults file " + path);
  if (static_cast<uint64_t>(f.tellg()) > kMaxMemoryBytes)
    fail(SE_ERR_FORMAT, "too_large", path + " is over the memory file limit");
  std::vector<uint8_t> data = read_file(path);
  Safetensors st = parse_safetensors(data.data(), data.size());
  std::map<std::string, Tensor> out;
  for (const auto& [name, e] : st.entries) {
    if (e.dtype != "F32" && e.dtype != "F16")
      fail(SE_ERR_FORMAT, "tensor_dtype", "defaults tensor " + name + " is " + e.dtype + ", not F32");
    out[name] = to_tensor(e, st.payload);
    for (float v : out[name].data)
      if (!std::isfinite(v)) fail(SE_ERR_FORMAT, "not_finite", "defaults tensor " + name + " has NaN or inf values");
  }
  return out;
}

}  // namespace se
