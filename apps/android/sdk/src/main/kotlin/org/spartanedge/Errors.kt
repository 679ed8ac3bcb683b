package org.spartanedge

/**
 * Everything the SDK throws. Each subclass is one kind of failure an app handles differently; [code] is a stable
 * string (the native runtime's se_last_error_code() where the failure came from there, else the class's own code).
 */
sealed class SpartanEdgeException(message: String, val code: String, cause: Throwable? = null) :
    Exception(message, cause)

/** The server could not be reached, or answered something the protocol does not allow (HTTP error, bad redirect). */
class NetworkException(message: String, cause: Throwable? = null, val httpStatus: Int? = null) :
    SpartanEdgeException(message, "network", cause)

/** A download ended short after every retry; the partial file is kept and the next call resumes it. */
class TruncatedException(message: String, cause: Throwable? = null) : SpartanEdgeException(message, "truncated", cause)

/** Bytes whose sha256 or size is not what the manifest promised; they never enter the cache. */
class IntegrityException(message: String) : SpartanEdgeException(message, "integrity")

/** A document or file that breaks docs/formats.md (manifest, memory header, state file). */
class FormatException(message: String, code: String = "format") : SpartanEdgeException(message, code)

/** Well-formed, but for another backbone fingerprint, task or memory shape. */
class MismatchException(message: String, code: String = "mismatch") : SpartanEdgeException(message, code)

/** Unknown task or target, or (offline) something the cache does not hold. */
class NotFoundException(message: String) : SpartanEdgeException(message, "not_found")

/** Offline mode and the cache lacks what the call needs: run once online first. */
class NotCachedException(message: String) : SpartanEdgeException(message, "not_cached")

/** The inference engine could not load or run (native library missing, ExecuTorch error, bad argument). */
class EngineException(message: String, code: String = "runtime", cause: Throwable? = null) :
    SpartanEdgeException(message, code, cause)

/** The local file system failed (disk full, permissions). */
class StorageException(message: String, cause: Throwable? = null) : SpartanEdgeException(message, "io", cause)
