#include "http.h"

#include <curl/curl.h>

#include <cstdio>
#include <memory>

namespace spartan_cli {

namespace {

struct Global {
  Global() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~Global() { curl_global_cleanup(); }
};

struct Transfer {
  HttpResult* result = nullptr;
  CURL* curl = nullptr;
  // downloads only
  std::string part;
  uint64_t have = 0, limit = 0;
  std::FILE* file = nullptr;
  bool decided = false, to_file = false;
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string key = lower(line.substr(0, colon)), value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) value.pop_back();
    if (key == "etag") t->result->etag = value;
    if (key == "content-range") t->result->content_range = value;
    if (key == "content-type") t->result->content_type = value;
  }
  return size * n;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  if (t->part.empty()) {
    if (t->result->body.size() + len > (64u << 20)) return 0;  // a document larger than this is not a manifest
    t->result->body.append(data, len);
    return len;
  }
  if (!t->decided) {  // the status line is known once the body starts
    t->decided = true;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &t->result->status);
    const std::string want = "bytes " + std::to_string(t->have) + "-";
    if (t->result->status == 206 && t->result->content_range.compare(0, want.size(), want) == 0) {
      t->file = std::fopen(t->part.c_str(), "ab");
    } else if (t->result->status == 200) {
      t->have = 0;  // the server ignored the range (or the file changed): start over
      t->file = std::fopen(t->part.c_str(), "wb");
    }
    t->to_file = t->file != nullptr;
  }
  if (!t->to_file) {
    if (t->result->body.size() < 4096) t->result->body.append(data, std::min<size_t>(len, 4096));
    return len;
  }
  if (std::fwrite(data, 1, len, t->file) != len) return 0;
  std::fflush(t->file);
  t->result->written += len;
  if (t->have + t->result->written > t->limit) return 0;  // longer than the manifest says: stop
  return len;
}

HttpResult perform(const std::string& url, const std::vector<std::string>& headers, long timeout_s,
                   Transfer& t) {
  static Global global;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  HttpResult& r = *t.result;
  if (!curl) {
    r.error = "curl_easy_init failed";
    return r;
  }
  t.curl = curl.get();
  curl_slist* list = nullptr;
  for (const std::string& h : headers) list = curl_slist_append(list, h.c_str());
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> owned(list, &curl_slist_free_all);
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl.get(), CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);  // no byte for timeout_s: give up (and resume later)
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, timeout_s);
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl.get(), CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &t);
  CURLcode rc = curl_easy_perform(curl.get());
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &r.status);
  if (t.file) std::fclose(t.file);
  t.file = nullptr;
  if (rc != CURLE_OK) r.error = curl_easy_strerror(rc);
  return r;
}

}  // namespace

HttpResult http_get(const std::string& url, const std::vector<std::string>& headers, long timeout_s) {
  HttpResult r;
  Transfer t;
  t.result = &r;
  return perform(url, headers, timeout_s, t);
}

HttpResult http_download(const std::string& url, const std::string& part, uint64_t have, const std::string& sha256,
                         uint64_t size, long timeout_s) {
  HttpResult r;
  Transfer t;
  t.result = &r;
  t.part = part;
  t.have = have;
  t.limit = size;
  // The sha256 is over the stored bytes, so no content coding; If-Range with the strong ETag (the file's sha256)
  // makes the server send the whole file instead of splicing another version onto what we have.
  std::vector<std::string> headers = {"Accept-Encoding: identity"};
  if (have > 0) {
    headers.push_back("Range: bytes=" + std::to_string(have) + "-");
    headers.push_back("If-Range: \"" + sha256 + "\"");
  }
  return perform(url, headers, timeout_s, t);
}

}  // namespace spartan_cli
