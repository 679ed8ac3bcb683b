/*
 * spartan_edge.h - the C ABI of the SPARTAN Edge native runtime (apps/native).
 *
 * What a phone app or a Linux board links: a BERT WordPiece tokenizer, the memory-file reader (docs/formats.md),
 * and the shared backbone program run by ExecuTorch's C++ runtime with the active task memory as its inputs.
 * Platform bindings (Kotlin over JNI in apps/android, Swift later) wrap exactly this header.
 *
 * Rules of the ABI:
 *  - Opaque handles, created by *_open and released by *_free (free accepts NULL). No C++ type crosses it.
 *  - Every fallible call returns se_status. On failure, se_last_error() is a human-readable message and
 *    se_last_error_code() a stable code string (the `error` codes of the conformance vectors, tests/conformance/),
 *    both valid until the next call on the same thread.
 *  - Strings are UTF-8 and NUL-terminated. Output arrays are caller-owned; *_capacity is their length in elements.
 *  - One engine may be used by one thread at a time; distinct engines are independent.
 */
#ifndef SPARTAN_EDGE_H
#define SPARTAN_EDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SE_ABI_VERSION 1

typedef enum se_status {
  SE_OK = 0,
  SE_ERR_ARGUMENT = 1,    /* NULL where a value is needed, a bad name, an output buffer too small */
  SE_ERR_IO = 2,          /* a file could not be opened, read or written */
  SE_ERR_FORMAT = 3,      /* a file or document breaks docs/formats.md (header, tensors, shapes, dtypes, values) */
  SE_ERR_MISMATCH = 4,    /* well-formed, but for another backbone fingerprint, memory shape or task */
  SE_ERR_INTEGRITY = 5,   /* bytes whose sha256 is not the one expected */
  SE_ERR_UNSUPPORTED = 6, /* e.g. a tokenizer kind this runtime does not implement */
  SE_ERR_NETWORK = 7,     /* server unreachable or an answer that is not what the protocol promises */
  SE_ERR_RUNTIME = 8,     /* ExecuTorch could not load or run the program */
  SE_ERR_NOT_FOUND = 9,   /* unknown task, missing file in a bundle, no active memory */
} se_status;

int se_abi_version(void);
const char* se_status_name(se_status status);
const char* se_last_error(void);
const char* se_last_error_code(void);

/* ---- tokenizer: Hugging Face tokenizer.json (BERT normalizer + BERT pre-tokenizer + WordPiece) ---- */

typedef struct se_tokenizer se_tokenizer;

/* max_length: truncation length including [CLS]/[SEP] (the program's max_seq_length). Any other tokenizer kind is
 * refused with SE_ERR_UNSUPPORTED. */
se_status se_tokenizer_open(const char* tokenizer_json_path, size_t max_length, se_tokenizer** out);
void se_tokenizer_free(se_tokenizer* tokenizer);

/* [CLS] text [SEP] (text_pair [SEP]), truncated like Hugging Face's "longest_first". text_pair may be NULL.
 * Writes min(n, ids_capacity) ids and sets *num_ids = n; SE_ERR_ARGUMENT if n > ids_capacity. */
se_status se_tokenizer_encode(const se_tokenizer* tokenizer, const char* text, const char* text_pair, int64_t* ids,
                              size_t ids_capacity, size_t* num_ids);

/* ---- engine: one loaded backbone program + tokenizer, and the active task memory ---- */

typedef struct se_engine se_engine;

/* backbone_json: the backbone description, as `GET /backbone/<target>` returns it or as the dist manifest's
 * `backbone` section merged with its target entry (fields read: fingerprint, memory_shape, max_seq_length,
 * max_labels, inputs, quantize). program_path: the ExecuTorch .pte; tokenizer_json_path: its tokenizer.json. */
se_status se_engine_open(const char* backbone_json, const char* program_path, const char* tokenizer_json_path,
                         se_engine** out);
/* The same from a local export folder (DIST/manifest.json, format_version 1 or 2, DIST/<target>/...); for a recipe
 * bundle (manifest v2) it also reads the target's "defaults" file (see se_engine_open_with_defaults). */
se_status se_engine_open_bundle(const char* dist_dir, const char* target, se_engine** out);
void se_engine_free(se_engine* engine);

/* Reads and fully validates a memory file (format_version 1 or 2, fp32 or fp16) against this backbone (fingerprint, memory shape,
 * top_k/temperature, max_labels) and makes it the active memory. The program is not reloaded. On failure the
 * previously active memory stays active. */
se_status se_engine_load_memory(se_engine* engine, const char* memory_path);

/* The active memory's task: name, number of outputs, whether it is a regression (1) or a classification (0). */
se_status se_engine_task(const se_engine* engine, const char** task_name, size_t* num_outputs, int* is_regression);
/* Label name i of the active task (NULL if out of range or a regression task). */
const char* se_engine_label(const se_engine* engine, size_t index);

/* Tokenizes text (+ text_pair, may be NULL) and runs the program with the active memory.
 * logits/probabilities (either may be NULL) receive num_outputs values; probabilities are the softmax of the logits
 * for a classification task and the raw prediction for a regression task. input_ids (may be NULL) receives the ids
 * fed to the program, *num_ids their count (SE_ERR_ARGUMENT if a buffer is too small). */
se_status se_engine_classify(se_engine* engine, const char* text, const char* text_pair, float* logits,
                             float* probabilities, size_t outputs_capacity, size_t* num_outputs, int64_t* input_ids,
                             size_t ids_capacity, size_t* num_ids);

/* Added after ABI v1 was first published (additions only; nothing above changed): */

/* For an engine from se_engine_open_bundle: validate DIST's memory for `task` (a validated name; the file must be
 * that task's) and make it active, as se_engine_load_memory. SE_ERR_ARGUMENT for an engine opened otherwise. */
se_status se_engine_load_bundle_task(se_engine* engine, const char* task);
/* Milliseconds the last successful se_engine_classify spent in the program call alone (ExecuTorch forward), for
 * measuring the runtime's own overhead; -1 for NULL. */
double se_engine_last_execute_ms(const se_engine* engine);
/* The truncation length of the engine's tokenizer (the program's max_seq_length): the largest *num_ids. */
size_t se_engine_max_length(const se_engine* engine);

/* se_engine_open for the recipe program (dist manifest format_version 2): defaults_path is the target's
 * defaults.safetensors (its bundle description lists it among `files`; NULL: none, as se_engine_open). Each program
 * input after the token inputs is fed the active memory's tensor of that name, else, for an input marked
 * "default": true, the defaults file's; a memory file lacking a non-default input is refused at
 * se_engine_load_memory (SE_ERR_FORMAT, code tensor_set). The defaults file must hold every default input, of the
 * program's shape (SE_ERR_FORMAT otherwise). Added after v1. */
se_status se_engine_open_with_defaults(const char* backbone_json, const char* program_path,
                                       const char* tokenizer_json_path, const char* defaults_path, se_engine** out);

/* ---- validation without an engine (conformance vectors, servers, tools) ---- */

/* A memory file against a backbone description (as in se_engine_open; NULL = only self-consistency checks). */
se_status se_validate_memory(const char* memory_path, const char* backbone_json);
/* The same, and the file must be the memory of `task` (SE_ERR_MISMATCH, code task_mismatch). Added after v1. */
se_status se_validate_task_memory(const char* memory_path, const char* backbone_json, const char* task);

#ifdef __cplusplus
}
#endif

#endif /* SPARTAN_EDGE_H */
