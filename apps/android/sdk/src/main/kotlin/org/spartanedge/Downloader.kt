package org.spartanedge

import org.json.JSONObject
import java.io.File
import java.io.FileOutputStream
import java.io.IOException
import java.net.HttpURLConnection
import java.net.URL

/** Called as bytes arrive: [done] of [total] bytes of the current step (a file, or the whole backbone bundle). */
fun interface ProgressListener {
    fun onProgress(done: Long, total: Long)
}

/** A finished download: the verified file in the cache, and how many bytes crossed the network for it. */
data class Fetched(val file: File, val bytesFetched: Long)

/**
 * Resumable, verified downloads over [HttpURLConnection] (on Android and the JVM alike), with apps/client's rules
 * (apps/client/transfer.py): a cut connection resumes with `Range: bytes=<have>-` and `If-Range: "<sha256>"` (the
 * server's strong ETag), so a continuation is only appended to bytes of the same file; after [attempts] tries a short
 * file raises [TruncatedException] and stays in partial/ for the next call; a complete file whose size or sha256
 * differs from the manifest's is deleted and raises [IntegrityException]. Nothing unverified reaches blobs/.
 */
class Downloader(
    private val cache: Cache,
    private val connectTimeoutMs: Int = 15_000,
    private val readTimeoutMs: Int = 30_000,
    private val attempts: Int = 4,
) {
    /** [progressBase]: bytes already done in a larger step (so a bundle reports one running total). */
    fun fetch(url: URL, sha256: String, size: Long, progress: ProgressListener? = null, progressBase: Long = 0,
              progressTotal: Long = size): Fetched {
        if (cache.has(sha256)) return Fetched(cache.blob(sha256), 0)
        val part = cache.partialFile(sha256)
        var fetched = 0L
        var lastError: IOException? = null
        for (attempt in 0 until attempts) {
            val have = if (part.isFile) part.length() else 0L
            if (have >= size) break
            val conn = url.openConnection() as HttpURLConnection
            try {
                conn.connectTimeout = connectTimeoutMs
                conn.readTimeout = readTimeoutMs
                conn.instanceFollowRedirects = false  // a redirect could lead anywhere; the manifest names the URL
                conn.setRequestProperty("Accept-Encoding", "identity")  // the sha256 is over the stored bytes
                if (have > 0) {
                    conn.setRequestProperty("Range", "bytes=$have-")
                    conn.setRequestProperty("If-Range", "\"$sha256\"")
                }
                val status = conn.responseCode
                val append = when {
                    status == 206 && (conn.getHeaderField("Content-Range") ?: "").startsWith("bytes $have-") -> true
                    status == 200 -> false  // the server ignored the range (or the file changed): start over
                    status == 416 -> { part.delete(); continue }
                    else -> throw NetworkException("GET $url: HTTP $status: ${errorMessage(conn)}", httpStatus = status)
                }
                FileOutputStream(part, append).use { out ->
                    conn.inputStream.use { input ->
                        val buf = ByteArray(1 shl 16)
                        var written = if (append) have else 0L
                        while (written <= size) {
                            val n = input.read(buf)
                            if (n < 0) break
                            out.write(buf, 0, n)  // whatever arrived is kept: a resume starts after it
                            written += n
                            fetched += n
                            progress?.onProgress(progressBase + minOf(written, size), progressTotal)
                        }
                    }
                }
            } catch (e: IOException) {
                lastError = e  // keep what arrived; the next attempt resumes from there
            } finally {
                conn.disconnect()
            }
        }
        val have = if (part.isFile) part.length() else 0L
        if (have < size) {
            throw TruncatedException("download of $url stopped at $have of $size bytes" +
                (lastError?.let { " (${it.javaClass.simpleName}: ${it.message})" } ?: "") + "; will resume next time",
                lastError)
        }
        if (have > size || Cache.sha256Of(part) != sha256) {
            part.delete()
            throw IntegrityException("$url: the downloaded file ($have bytes) does not match the manifest's sha256 " +
                "${sha256.take(16)}… ($size bytes); refused")
        }
        return Fetched(cache.install(part, sha256), fetched)
    }

    /** GET a small JSON document; returns (status, body, ETag). 304 has an empty body. */
    fun getText(url: URL, etag: String?): Triple<Int, String, String?> {
        val conn = url.openConnection() as HttpURLConnection
        try {
            conn.connectTimeout = connectTimeoutMs
            conn.readTimeout = readTimeoutMs
            conn.instanceFollowRedirects = false
            etag?.let { conn.setRequestProperty("If-None-Match", it) }
            val status = conn.responseCode
            return when (status) {
                200 -> Triple(status, conn.inputStream.use { it.readBytes().toString(Charsets.UTF_8) },
                    conn.getHeaderField("ETag"))
                304 -> Triple(status, "", etag)
                else -> throw NetworkException("GET $url: HTTP $status: ${errorMessage(conn)}", httpStatus = status)
            }
        } catch (e: IOException) {
            throw NetworkException("cannot reach ${url.protocol}://${url.authority}: ${e.message}", e)
        } finally {
            conn.disconnect()
        }
    }

    /** The server's JSON error message (docs/server.md: {"error", "message", ...}), else the start of the body. */
    private fun errorMessage(conn: HttpURLConnection): String = try {
        val text = (conn.errorStream ?: return "(no body)").use { it.readBytes().toString(Charsets.UTF_8) }
        try {
            JSONObject(text).optString("message", text.take(200))
        } catch (e: Exception) {
            text.take(200)
        }
    } catch (e: IOException) {
        "(unreadable body)"
    }
}
