package org.spartanedge

/**
 * The only strings from the network that the SDK turns into file names or URLs, and the rules they must pass.
 * Cache files are named by a checked sha256 alone; task names, bundle paths and URLs are checked before use, so a
 * hostile manifest cannot point a write outside the cache or a request at another host.
 */
object Names {
    private val SHA256 = Regex("^[0-9a-f]{64}$")
    // The server's rule (demo_server/validate.py TASK_RE), plus no "..".
    private val TASK = Regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    private val TARGET = Regex("^[a-z0-9][a-z0-9_-]{0,31}$")
    // Relative, '/'-separated, no '.' or '..' segment, no backslash.
    private val BUNDLE_PATH = Regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    // A same-server absolute path with an optional query: no scheme, no '//' host, no '..', no backslash or '#'.
    private val URL_PATH = Regex("^/[A-Za-z0-9_.~/-]*(\\?[A-Za-z0-9_.~=&%-]*)?$")

    fun isSha256(s: String): Boolean = SHA256.matches(s)
    fun isTask(s: String): Boolean = TASK.matches(s) && ".." !in s
    fun isTarget(s: String): Boolean = TARGET.matches(s)
    fun isBundlePath(s: String): Boolean =
        BUNDLE_PATH.matches(s) && s.split('/').none { it == "." || it == ".." }
    fun isServerPath(s: String): Boolean =
        URL_PATH.matches(s) && !s.startsWith("//") && s.substringBefore('?').split('/').none { it == "." || it == ".." }

    fun sha256(s: String, where: String): String =
        if (isSha256(s)) s else throw FormatException("$where: '${s.take(80)}' is not a 64-hex sha256", "bad_sha256")
    fun task(s: String, where: String): String =
        if (isTask(s)) s else throw FormatException("$where: bad task name '${s.take(80)}'", "bad_name")
    fun target(s: String, where: String): String =
        if (isTarget(s)) s else throw FormatException("$where: bad target name '${s.take(80)}'", "bad_name")
    fun bundlePath(s: String, where: String): String =
        if (isBundlePath(s)) s else throw FormatException("$where: bad bundle path '${s.take(80)}'", "bad_path")
    fun serverPath(s: String, where: String): String =
        if (isServerPath(s)) s else throw FormatException("$where: url '${s.take(80)}' is not a path on this server",
            "bad_url")
}
