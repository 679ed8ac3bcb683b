// spartan-edge: the SPARTAN Edge native runtime on the command line.
//
//   spartan-edge --bundle DIST --task T [--target android] [--pair P] [--json] TEXT...
//   spartan-edge --server URL --cache DIR --task T [--target android] [--offline] [--pair P] [--json] TEXT...
//   spartan-edge tokenize --tokenizer tokenizer.json [--max-length N]     (stdin: one JSON string or [a, b] a line)
//   spartan-edge validate-memory FILE [--backbone BACKBONE.json] [--task T]       (prints {"ok", "status", "code", "message"})
//   spartan-edge validate-catalog FILE                                   (a GET /manifest body; same output)
//   spartan-edge bench --bundle DIST --task T                             (benchmarks/native_vs_python.py drives it)
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "catalog.h"
#include "client.h"
#include "spartan_edge.h"

using json = nlohmann::json;

namespace {

int usage(const char* why) {
  std::fprintf(stderr,
               "error: %s\nusage:\n"
               "  spartan-edge --bundle DIST --task T [--target android] [--pair P] [--json] TEXT...\n"
               "  spartan-edge --server URL --cache DIR --task T [--target android] [--offline] [--pair P] [--json] "
               "TEXT...\n"
               "  spartan-edge tokenize --tokenizer FILE [--max-length N] < lines\n"
               "  spartan-edge validate-memory FILE [--backbone FILE] [--task T]\n"
               "  spartan-edge validate-catalog FILE\n"
               "  spartan-edge bench --bundle DIST --task T < commands\n",
               why);
  return 2;
}

int report(const char* what) {
  std::fprintf(stderr, "error: %s%s%s [%s]\n", what, *what ? ": " : "", se_last_error(), se_last_error_code());
  return 1;
}

struct EngineDeleter {
  void operator()(se_engine* e) const { se_engine_free(e); }
};
using EnginePtr = std::unique_ptr<se_engine, EngineDeleter>;

struct Args {
  std::string bundle, server, cache, task, target = "android", pair;
  bool has_pair = false, json_out = false, offline = false;
  std::vector<std::string> texts;
};

// One prediction as text or as JSON (label, probabilities, logits, the input_ids fed to the program).
int classify_all(se_engine* engine, const Args& a, const json& extra) {
  const char* task = nullptr;
  size_t n_out = 0;
  int is_reg = 0;
  if (se_engine_task(engine, &task, &n_out, &is_reg) != SE_OK) return report("task");
  std::vector<float> logits(n_out), probs(n_out);
  std::vector<int64_t> ids(se_engine_max_length(engine));
  for (const std::string& text : a.texts) {
    size_t n = 0, n_ids = 0;
    if (se_engine_classify(engine, text.c_str(), a.has_pair ? a.pair.c_str() : nullptr, logits.data(), probs.data(),
                           logits.size(), &n, ids.data(), ids.size(), &n_ids) != SE_OK)
      return report("classify");
    json probabilities = json::object();
    std::string label;
    size_t best = 0;
    for (size_t i = 0; i < n; ++i)
      if (logits[i] > logits[best]) best = i;
    if (!is_reg) {
      label = se_engine_label(engine, best);
      for (size_t i = 0; i < n; ++i) probabilities[se_engine_label(engine, i)] = probs[i];
    }
    double ms = se_engine_last_execute_ms(engine);
    if (a.json_out) {
      json out = {{"task", task},
                  {"text", text},
                  {"label", is_reg ? json(nullptr) : json(label)},
                  {"probabilities", probabilities},
                  {"logits", std::vector<float>(logits.begin(), logits.begin() + n)},
                  {"input_ids", std::vector<int64_t>(ids.begin(), ids.begin() + n_ids)},
                  {"latency_ms", ms}};
      out.update(extra);
      std::cout << out.dump() << std::endl;
    } else {
      std::string head = std::string(task) + ": ";
      if (is_reg) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "value %.4f", logits[0]);
        head += buf;
      } else {
        head += label + "  (";
        for (size_t i = 0; i < n; ++i) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.3f", probs[i]);
          head += std::string(i ? ", " : "") + se_engine_label(engine, i) + " " + buf;
        }
        head += ")";
      }
      char lat[64];
      std::snprintf(lat, sizeof lat, "  latency %.2f ms", ms);
      std::cout << head << "\n" << lat;
      if (extra.contains("bytes_fetched")) {
        auto b = extra["bytes_fetched"].get<long long>();
        std::cout << "; " << (b ? std::to_string(b) + " bytes fetched" : std::string("0 bytes fetched (cached)"));
      }
      std::cout << std::endl;
    }
  }
  return 0;
}

int run_bundle(const Args& a) {
  se_engine* raw = nullptr;
  if (se_engine_open_bundle(a.bundle.c_str(), a.target.c_str(), &raw) != SE_OK) return report(a.bundle.c_str());
  EnginePtr engine(raw);
  if (se_engine_load_bundle_task(engine.get(), a.task.c_str()) != SE_OK) return report(a.task.c_str());
  return classify_all(engine.get(), a, json::object());
}

// For benchmarks/native_vs_python.py: one loaded engine, commands on stdin, one JSON line per command.
//   "run S N"   N classifications of a text of S tokens: wall time of se_engine_classify and of the program call
//   "swap TASK" se_engine_load_bundle_task (read + validate + activate) and the first classification after it
int run_bench(int argc, char** argv) {
  std::string dist, task, target = "android";
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--bundle") dist = argv[i + 1];
    else if (k == "--task") task = argv[i + 1];
    else if (k == "--target") target = argv[i + 1];
    else return usage(("unknown argument " + k).c_str());
  }
  se_engine* raw = nullptr;
  if (se_engine_open_bundle(dist.c_str(), target.c_str(), &raw) != SE_OK) return report(dist.c_str());
  EnginePtr engine(raw);
  if (se_engine_load_bundle_task(engine.get(), task.c_str()) != SE_OK) return report(task.c_str());
  std::vector<float> logits(1024);
  auto text_of = [](long s) {  // "good" is one token: [CLS] + (S-2) words + [SEP] = S ids
    std::string t;
    for (long i = 0; i + 2 < s; ++i) t += i ? " good" : "good";
    return t;
  };
  auto ms_since = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  std::string cmd;
  while (std::cin >> cmd) {
    if (cmd == "run") {
      long s = 0, n = 0;
      std::cin >> s >> n;
      std::string text = text_of(s);
      json total = json::array(), exec = json::array();
      for (long i = 0; i < n; ++i) {
        size_t k = 0, ids = 0;
        auto t0 = std::chrono::steady_clock::now();
        if (se_engine_classify(engine.get(), text.c_str(), nullptr, logits.data(), nullptr, logits.size(), &k,
                               nullptr, 0, &ids) != SE_OK)
          return report("classify");
        total.push_back(ms_since(t0));
        exec.push_back(se_engine_last_execute_ms(engine.get()));
      }
      std::cout << json({{"total_ms", total}, {"execute_ms", exec}}).dump() << std::endl;
    } else if (cmd == "swap") {
      std::string t;
      std::cin >> t;
      auto t0 = std::chrono::steady_clock::now();
      if (se_engine_load_bundle_task(engine.get(), t.c_str()) != SE_OK) return report(t.c_str());
      double load = ms_since(t0);
      size_t k = 0, ids = 0;
      if (se_engine_classify(engine.get(), "a short sentence to classify", nullptr, logits.data(), nullptr,
                             logits.size(), &k, nullptr, 0, &ids) != SE_OK)
        return report("classify");
      std::cout << json({{"load_ms", load}, {"load_and_first_ms", ms_since(t0)},
                         {"first_execute_ms", se_engine_last_execute_ms(engine.get())}}).dump() << std::endl;
    } else {
      return usage(("unknown bench command " + cmd).c_str());
    }
  }
  return 0;
}

int run_tokenize(int argc, char** argv) {
  std::string path;
  size_t max_length = 512;
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--tokenizer" && i + 1 < argc) path = argv[++i];
    else if (k == "--max-length" && i + 1 < argc) max_length = std::stoul(argv[++i]);
    else return usage(("unknown argument " + k).c_str());
  }
  if (path.empty()) return usage("tokenize needs --tokenizer");
  se_tokenizer* tok = nullptr;
  if (se_tokenizer_open(path.c_str(), max_length, &tok) != SE_OK) return report(path.c_str());
  std::unique_ptr<se_tokenizer, void (*)(se_tokenizer*)> owner(tok, se_tokenizer_free);
  std::vector<int64_t> ids(max_length);
  std::string line;
  std::ios::sync_with_stdio(false);
  while (std::getline(std::cin, line)) {
    json in = json::parse(line, nullptr, false);
    std::string a, b;
    bool pair = false;
    if (in.is_string()) {
      a = in.get<std::string>();
    } else if (in.is_array() && in.size() == 2 && in[0].is_string() && in[1].is_string()) {
      a = in[0].get<std::string>();
      b = in[1].get<std::string>();
      pair = true;
    } else {
      std::cout << json({{"error", "bad_input"}}).dump() << "\n";
      continue;
    }
    size_t n = 0;
    if (se_tokenizer_encode(tok, a.c_str(), pair ? b.c_str() : nullptr, ids.data(), ids.size(), &n) != SE_OK) {
      std::cout << json({{"error", se_last_error_code()}, {"message", se_last_error()}}).dump() << "\n";
      continue;
    }
    std::cout << json(std::vector<int64_t>(ids.begin(), ids.begin() + n)).dump() << "\n";
  }
  std::cout.flush();
  return 0;
}

int run_validate_memory(int argc, char** argv) {
  std::string file, backbone, task;
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "--backbone" && i + 1 < argc) backbone = argv[++i];
    else if (k == "--task" && i + 1 < argc) task = argv[++i];
    else if (file.empty()) file = k;
    else return usage(("unknown argument " + k).c_str());
  }
  if (file.empty()) return usage("validate-memory needs FILE");
  std::string doc;
  if (!backbone.empty()) {
    FILE* f = std::fopen(backbone.c_str(), "rb");
    if (f == nullptr) return usage(("cannot open " + backbone).c_str());
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) doc.append(buf, n);
    std::fclose(f);
  }
  se_status s = se_validate_task_memory(file.c_str(), backbone.empty() ? nullptr : doc.c_str(),
                                       task.empty() ? nullptr : task.c_str());
  std::cout << json({{"ok", s == SE_OK},
                     {"status", se_status_name(s)},
                     {"code", s == SE_OK ? json(nullptr) : json(se_last_error_code())},
                     {"message", s == SE_OK ? json(nullptr) : json(se_last_error())}})
                   .dump()
            << std::endl;
  return s == SE_OK ? 0 : 1;
}

int run_validate_catalog(int argc, char** argv) {
  if (argc != 3) return usage("validate-catalog needs FILE");
  std::ifstream f(argv[2], std::ios::binary);
  if (!f) return usage("cannot open the catalog file");
  std::string body((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  try {
    spartan_cli::read_catalog(body);
    std::cout << json({{"ok", true}, {"code", nullptr}, {"message", nullptr}}).dump() << std::endl;
    return 0;
  } catch (const spartan_cli::CatalogError& e) {
    std::cout << json({{"ok", false}, {"code", e.code}, {"message", e.what()}}).dump() << std::endl;
    return 1;
  }
}

int run(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "tokenize") return run_tokenize(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "validate-memory") return run_validate_memory(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "bench") return run_bench(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "validate-catalog") return run_validate_catalog(argc, argv);
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&](std::string& dst) {
      if (i + 1 >= argc) return false;
      dst = argv[++i];
      return true;
    };
    bool ok = true;
    if (k == "--bundle") ok = value(a.bundle);
    else if (k == "--server") ok = value(a.server);
    else if (k == "--cache") ok = value(a.cache);
    else if (k == "--task") ok = value(a.task);
    else if (k == "--target") ok = value(a.target);
    else if (k == "--pair") ok = a.has_pair = value(a.pair);
    else if (k == "--json") a.json_out = true;
    else if (k == "--offline") a.offline = true;
    else if (k == "--") { for (++i; i < argc; ++i) a.texts.push_back(argv[i]); }
    else if (k.size() > 1 && k[0] == '-' && k[1] == '-') return usage(("unknown option " + k).c_str());
    else a.texts.push_back(k);
    if (!ok) return usage(("missing value for " + k).c_str());
  }
  if (a.task.empty()) return usage("--task is required");
  if (a.texts.empty()) return usage("no TEXT given");
  if (!a.bundle.empty()) {
    if (!a.server.empty() || a.offline) return usage("--bundle runs from a local export; no --server/--offline");
    return run_bundle(a);
  }
  if (a.cache.empty()) return usage("--cache DIR is required with --server/--offline");
  if (a.server.empty() && !a.offline) return usage("--server URL is required unless --offline");
  spartan_cli::ClientOptions opt{a.server, a.cache, a.target, a.offline};
  spartan_cli::Client client(opt);
  se_engine* engine = nullptr;
  json extra;
  if (!client.prepare(a.task, &engine, &extra)) return 1;
  return classify_all(engine, a, extra);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // a bad number in an option, an I/O failure writing stdout
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
