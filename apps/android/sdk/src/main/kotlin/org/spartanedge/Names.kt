package org.spartanedge

/**
 * The strings from the network that the SDK turns into file names or URLs, and the rules they must pass (the same
 * whole-string rules as spartan_formats/names.py and catalog.py, docs/formats.md "Error codes"). Cache files are
 * named by a checked sha256 alone; names, bundle paths and URLs are checked before use, so a hostile catalog cannot
 * point a write outside the cache or a request at another host.
 */
object Names {
    private val SHA256 = Regex("[0-9a-f]{64}")
    private val NAME = Regex("[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
    private val PATH_SEGMENT = Regex("[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
    private const val MAX_PATH = 255
    // A same-server path: one leading '/', then URL-safe characters only (no scheme, '@', backslash, space, '#').
    private val URL_PATH = Regex("/(?!/)[A-Za-z0-9_.~%/?&=:+-]*")

    fun isSha256(s: String): Boolean = SHA256.matches(s)
    fun isName(s: String): Boolean = NAME.matches(s) && ".." !in s
    fun isBundlePath(s: String): Boolean = s.length in 1..MAX_PATH &&
        s.split('/').all { PATH_SEGMENT.matches(it) && ".." !in it }
    fun isServerPath(s: String): Boolean = s.length <= 2048 && URL_PATH.matches(s) && "/../" !in "$s/"

    fun sha256(s: String, where: String): String =
        if (isSha256(s)) s else throw FormatException("$where: ${show(s)} is not 64 lowercase hex digits", "bad_sha256")
    fun fingerprint(s: String, where: String): String = if (isSha256(s)) s
        else throw FormatException("$where: ${show(s)} is not 64 lowercase hex digits", "bad_fingerprint")
    fun task(s: String, where: String): String = name(s, where)
    fun target(s: String, where: String): String = name(s, where)
    fun bundlePath(s: String, where: String): String =
        if (isBundlePath(s)) s else throw FormatException("$where: bad bundle path ${show(s)}", "bad_path")
    fun serverPath(s: String, where: String): String = if (isServerPath(s)) s
        else throw FormatException("$where: url ${show(s)} is not a path on this server", "bad_url")

    private fun name(s: String, where: String): String = if (isName(s)) s
        else throw FormatException("$where: ${show(s)} is not 1-64 characters of A-Z a-z 0-9 _ . - (no '..')",
            "bad_name")

    private fun show(s: String): String = "'" + (if (s.length <= 80) s else s.take(77) + "...") + "'"
}
