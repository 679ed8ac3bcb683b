// HTTP GET over libcurl: small documents into memory, files appended to a partial download (Range resume).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace spartan_cli {

struct HttpResult {
  long status = 0;      // 0: no HTTP answer (error says why)
  std::string error;    // transport error (connection refused, cut connection, timeout)
  std::string body;     // documents; for downloads, the body of a non-2xx answer
  std::string etag, content_range, content_type;
  uint64_t written = 0;  // bytes appended to the file (downloads)
};

HttpResult http_get(const std::string& url, const std::vector<std::string>& headers, long timeout_s);

// GET url into `part`: with have > 0 it asks for `Range: bytes=have-` + `If-Range: "sha256"` and appends on a
// matching 206, starts over on a 200; every chunk is flushed as it arrives (a killed process keeps what it got).
HttpResult http_download(const std::string& url, const std::string& part, uint64_t have, const std::string& sha256,
                         uint64_t size, long timeout_s);

}  // namespace spartan_cli
