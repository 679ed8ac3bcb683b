// JNI glue: org.spartanedge.NativeEngine's external functions over the C ABI in apps/native/include/spartan_edge.h.
//
// Strings cross as UTF-16 (GetStringRegion / NewString) and are converted to UTF-8 here: JNI's own "UTF" calls use
// modified UTF-8, which encodes characters outside the BMP (emoji) as surrogate pairs that the tokenizer would not
// read as the text's characters. A failed se_* call becomes org.spartanedge.NativeStatusException(status, code,
// message), which the Kotlin side maps onto its exception types. Engine handles are owned by the Kotlin object
// (NativeEngine.close -> nativeFree).
#include <jni.h>

#include <memory>
#include <string>
#include <vector>

#include "spartan_edge.h"

namespace {

constexpr size_t kMaxIds = 8192;      // the SDK refuses manifests with max_seq_length above this
constexpr size_t kMaxOutputs = 4096;  // and max_labels above this

std::string to_utf8(JNIEnv* env, jstring s) {
  const jsize n = env->GetStringLength(s);
  std::vector<jchar> u(static_cast<size_t>(n));
  env->GetStringRegion(s, 0, n, u.data());
  std::string out;
  out.reserve(u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    uint32_t c = u[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < u.size() && u[i + 1] >= 0xDC00 && u[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (u[i + 1] - 0xDC00);
      ++i;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;  // a lone surrogate is not a character
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

jstring from_utf8(JNIEnv* env, const char* s) {
  std::vector<jchar> u;
  const auto* p = reinterpret_cast<const unsigned char*>(s ? s : "");
  while (*p) {
    uint32_t c = *p;
    int extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : -1;
    if (extra < 0) {
      u.push_back(0xFFFD);
      ++p;
      continue;
    }
    c = extra == 0 ? c : c & (0x3F >> extra);
    ++p;
    bool ok = true;
    for (int k = 0; k < extra; ++k, ++p) {
      if ((*p & 0xC0) != 0x80) {
        ok = false;
        break;
      }
      c = (c << 6) | (*p & 0x3F);
    }
    if (!ok) {
      u.push_back(0xFFFD);
    } else if (c >= 0x10000) {
      c -= 0x10000;
      u.push_back(static_cast<jchar>(0xD800 + (c >> 10)));
      u.push_back(static_cast<jchar>(0xDC00 + (c & 0x3FF)));
    } else {
      u.push_back(static_cast<jchar>(c));
    }
  }
  return env->NewString(u.data(), static_cast<jsize>(u.size()));
}

// Throws NativeStatusException for a failed call; returns true when `status` is SE_OK.
bool ok(JNIEnv* env, se_status status) {
  if (status == SE_OK) return true;
  jclass cls = env->FindClass("org/spartanedge/NativeStatusException");
  if (cls == nullptr) return false;  // NoClassDefFoundError is pending
  jmethodID ctor = env->GetMethodID(cls, "<init>", "(ILjava/lang/String;Ljava/lang/String;)V");
  if (ctor == nullptr) return false;
  jstring code = from_utf8(env, se_last_error_code());
  jstring message = from_utf8(env, se_last_error());
  auto* ex = static_cast<jthrowable>(env->NewObject(cls, ctor, static_cast<jint>(status), code, message));
  if (ex != nullptr) env->Throw(ex);
  return false;
}

void throw_argument(JNIEnv* env, const char* message) {
  jclass cls = env->FindClass("org/spartanedge/NativeStatusException");
  if (cls == nullptr) return;
  jmethodID ctor = env->GetMethodID(cls, "<init>", "(ILjava/lang/String;Ljava/lang/String;)V");
  auto* ex = static_cast<jthrowable>(
      env->NewObject(cls, ctor, static_cast<jint>(SE_ERR_ARGUMENT), from_utf8(env, "argument"), from_utf8(env, message)));
  if (ex != nullptr) env->Throw(ex);
}

se_engine* engine_of(JNIEnv* env, jlong handle) {
  auto* e = reinterpret_cast<se_engine*>(handle);
  if (e == nullptr) throw_argument(env, "engine is closed");
  return e;
}

struct EngineFree {
  void operator()(se_engine* e) const { se_engine_free(e); }
};

}  // namespace

extern "C" {

JNIEXPORT jint JNICALL Java_org_spartanedge_NativeEngine_nativeAbiVersion(JNIEnv*, jclass) {
  return se_abi_version();
}

JNIEXPORT jlong JNICALL Java_org_spartanedge_NativeEngine_nativeOpen(JNIEnv* env, jclass, jstring backbone_json,
                                                                      jstring program, jstring tokenizer,
                                                                      jstring defaults) {
  const std::string json = to_utf8(env, backbone_json), prog = to_utf8(env, program), tok = to_utf8(env, tokenizer);
  const std::string dflt = defaults != nullptr ? to_utf8(env, defaults) : std::string();
  se_engine* raw = nullptr;
  // The recipe program's defaults file feeds what a plain task's memory leaves out; null for a plain program.
  if (!ok(env, se_engine_open_with_defaults(json.c_str(), prog.c_str(), tok.c_str(),
                                            defaults != nullptr ? dflt.c_str() : nullptr, &raw)))
    return 0;
  std::unique_ptr<se_engine, EngineFree> engine(raw);
  return reinterpret_cast<jlong>(engine.release());  // owned by NativeEngine from here
}

JNIEXPORT void JNICALL Java_org_spartanedge_NativeEngine_nativeFree(JNIEnv*, jclass, jlong handle) {
  se_engine_free(reinterpret_cast<se_engine*>(handle));
}

JNIEXPORT void JNICALL Java_org_spartanedge_NativeEngine_nativeLoadMemory(JNIEnv* env, jclass, jlong handle,
                                                                          jstring memory) {
  se_engine* e = engine_of(env, handle);
  if (e == nullptr) return;
  const std::string path = to_utf8(env, memory);
  ok(env, se_engine_load_memory(e, path.c_str()));
}

// [task name, "regression" | "classification", label 0, label 1, ...]
JNIEXPORT jobjectArray JNICALL Java_org_spartanedge_NativeEngine_nativeTask(JNIEnv* env, jclass, jlong handle) {
  se_engine* e = engine_of(env, handle);
  if (e == nullptr) return nullptr;
  const char* name = nullptr;
  size_t num_outputs = 0;
  int is_regression = 0;
  if (!ok(env, se_engine_task(e, &name, &num_outputs, &is_regression))) return nullptr;
  const size_t labels = is_regression ? 0 : num_outputs;
  jclass string_cls = env->FindClass("java/lang/String");
  jobjectArray out = env->NewObjectArray(static_cast<jsize>(2 + labels), string_cls, nullptr);
  if (out == nullptr) return nullptr;
  env->SetObjectArrayElement(out, 0, from_utf8(env, name));
  env->SetObjectArrayElement(out, 1, from_utf8(env, is_regression ? "regression" : "classification"));
  for (size_t i = 0; i < labels; ++i) {
    jstring label = from_utf8(env, se_engine_label(e, i));
    env->SetObjectArrayElement(out, static_cast<jsize>(2 + i), label);
    env->DeleteLocalRef(label);
  }
  return out;
}

JNIEXPORT jobject JNICALL Java_org_spartanedge_NativeEngine_nativeClassify(JNIEnv* env, jclass, jlong handle,
                                                                           jstring text, jstring pair) {
  se_engine* e = engine_of(env, handle);
  if (e == nullptr) return nullptr;
  const std::string t = to_utf8(env, text);
  const std::string p = pair != nullptr ? to_utf8(env, pair) : std::string();
  std::vector<float> logits(kMaxOutputs), probs(kMaxOutputs);
  std::vector<int64_t> ids(kMaxIds);
  size_t num_outputs = 0, num_ids = 0;
  if (!ok(env, se_engine_classify(e, t.c_str(), pair != nullptr ? p.c_str() : nullptr, logits.data(), probs.data(),
                                  kMaxOutputs, &num_outputs, ids.data(), kMaxIds, &num_ids))) {
    return nullptr;
  }
  jfloatArray jl = env->NewFloatArray(static_cast<jsize>(num_outputs));
  jfloatArray jp = env->NewFloatArray(static_cast<jsize>(num_outputs));
  jlongArray ji = env->NewLongArray(static_cast<jsize>(num_ids));
  if (jl == nullptr || jp == nullptr || ji == nullptr) return nullptr;  // OutOfMemoryError pending
  env->SetFloatArrayRegion(jl, 0, static_cast<jsize>(num_outputs), logits.data());
  env->SetFloatArrayRegion(jp, 0, static_cast<jsize>(num_outputs), probs.data());
  static_assert(sizeof(jlong) == sizeof(int64_t), "jlong is 64-bit");
  env->SetLongArrayRegion(ji, 0, static_cast<jsize>(num_ids), reinterpret_cast<const jlong*>(ids.data()));
  jclass cls = env->FindClass("org/spartanedge/EngineOutput");
  if (cls == nullptr) return nullptr;
  jmethodID ctor = env->GetMethodID(cls, "<init>", "([F[F[J)V");
  if (ctor == nullptr) return nullptr;
  return env->NewObject(cls, ctor, jl, jp, ji);
}

JNIEXPORT void JNICALL Java_org_spartanedge_NativeEngine_nativeValidateMemory(JNIEnv* env, jclass, jstring memory,
                                                                              jstring backbone_json) {
  const std::string path = to_utf8(env, memory);
  const std::string json = backbone_json != nullptr ? to_utf8(env, backbone_json) : std::string();
  ok(env, se_validate_memory(path.c_str(), backbone_json != nullptr ? json.c_str() : nullptr));
}

}  // extern "C"
