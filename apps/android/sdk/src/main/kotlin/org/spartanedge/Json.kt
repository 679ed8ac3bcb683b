package org.spartanedge

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject

/*
 * Strict reads over org.json (built into Android; Debian's libandroid-json-java is the same code on the JVM).
 * org.json's optX/getX coerce ("2" reads as the int 2, 2.7 as 2); a document from the network must have the types
 * docs/formats.md gives, so these helpers check the value's own type and name the field in the error.
 */

internal fun parseObject(text: String, what: String): JSONObject = try {
    JSONObject(text)
} catch (e: JSONException) {
    throw FormatException("$what is not a JSON object: ${e.message}", "bad_json")
}

internal fun JSONObject.raw(key: String, where: String): Any {
    if (!has(key) || isNull(key)) throw FormatException("$where: missing field '$key'", "missing_field")
    return get(key)
}

internal fun JSONObject.string(key: String, where: String): String =
    raw(key, where) as? String ?: throw FormatException("$where: '$key' must be a string", "bad_type")

internal fun JSONObject.stringOrNull(key: String, where: String): String? =
    if (!has(key) || isNull(key)) null else string(key, where)

internal fun JSONObject.obj(key: String, where: String): JSONObject =
    raw(key, where) as? JSONObject ?: throw FormatException("$where: '$key' must be an object", "bad_type")

internal fun JSONObject.array(key: String, where: String): JSONArray =
    raw(key, where) as? JSONArray ?: throw FormatException("$where: '$key' must be a list", "bad_type")

internal fun JSONObject.bool(key: String, where: String): Boolean =
    raw(key, where) as? Boolean ?: throw FormatException("$where: '$key' must be true or false", "bad_type")

/** A whole number (JSON 2, not 2.5, "2" or true) within [min, max]. */
internal fun JSONObject.long(key: String, where: String, min: Long = 0, max: Long = Long.MAX_VALUE): Long {
    val v = raw(key, where)
    val n = when (v) {
        is Int -> v.toLong()
        is Long -> v
        is Double -> if (v == Math.floor(v) && !v.isInfinite() && Math.abs(v) < 9.0e15) v.toLong() else null
        else -> null
    } ?: throw FormatException("$where: '$key' must be a whole number", "bad_type")
    if (n < min || n > max) throw FormatException("$where: '$key' = $n is outside $min..$max", "out_of_range")
    return n
}

internal fun JSONObject.int(key: String, where: String, min: Int = 0, max: Int = Int.MAX_VALUE): Int =
    long(key, where, min.toLong(), max.toLong()).toInt()

internal fun JSONArray.strings(where: String): List<String> = (0 until length()).map { i ->
    get(i) as? String ?: throw FormatException("$where: entry $i must be a string", "bad_type")
}

internal fun JSONArray.objects(where: String): List<JSONObject> = (0 until length()).map { i ->
    get(i) as? JSONObject ?: throw FormatException("$where: entry $i must be an object", "bad_type")
}

internal fun JSONObject.keyList(): List<String> = keys().asSequence().toList().sorted()
