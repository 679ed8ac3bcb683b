package org.spartanedge

import org.json.JSONArray
import org.json.JSONException
import org.json.JSONObject
import org.json.JSONTokener

/*
 * Strict reads over org.json (built into Android; Debian's libandroid-json-java is the same code on the JVM), with
 * the error codes of docs/formats.md. org.json's optX/getX coerce ("2" reads as the int 2, 2.7 as 2); a document
 * from the network must have the types the format gives, so these helpers check the value's own type and name the
 * field in the error. Documents pass StrictJson first (no comments, no lenient syntax, no repeated keys).
 */

internal fun parseObject(text: String, what: String, notJson: String = "not_json",
                         notObject: String = "not_object"): JSONObject {
    StrictJson.problem(text)?.let { throw FormatException("$what is not JSON: $it", notJson) }
    val tok = JSONTokener(text)
    val v = try {
        tok.nextValue().also { if (tok.nextClean() != 0.toChar()) throw JSONException("text after the value") }
    } catch (e: JSONException) {
        throw FormatException("$what is not JSON: ${e.message?.take(120)}", notJson)
    }
    return v as? JSONObject ?: throw FormatException("$what is JSON but not an object", notObject)
}

internal fun JSONObject.raw(key: String, where: String): Any {
    if (!has(key)) throw FormatException("$where has no '$key'", "missing_field")
    return get(key)
}

internal fun JSONObject.present(key: String): Boolean = has(key) && !isNull(key)

internal fun JSONObject.string(key: String, where: String, maxLen: Int = 4096): String {
    val v = raw(key, where)
    if (v !is String || v.length > maxLen) throw FormatException("$where.$key must be a string", "bad_field")
    return v
}

internal fun JSONObject.stringOrNull(key: String, where: String): String? =
    if (present(key)) string(key, where) else null

internal fun JSONObject.obj(key: String, where: String): JSONObject =
    raw(key, where) as? JSONObject ?: throw FormatException("$where.$key must be an object", "bad_field")

internal fun JSONObject.array(key: String, where: String): JSONArray =
    raw(key, where) as? JSONArray ?: throw FormatException("$where.$key must be a list", "bad_field")

internal fun JSONObject.bool(key: String, where: String): Boolean =
    raw(key, where) as? Boolean ?: throw FormatException("$where.$key must be true or false", "bad_field")

/** A JSON integer (2; not 2.0, "2" or true) within [min, max]. */
internal fun JSONObject.long(key: String, where: String, min: Long = 0, max: Long = Long.MAX_VALUE): Long {
    val n = when (val v = raw(key, where)) {
        is Int -> v.toLong()
        is Long -> v
        else -> null  // org.json reads 2.0 as a Double: not an integer in the text
    } ?: throw FormatException("$where.$key must be an integer", "bad_field")
    if (n < min || n > max) throw FormatException("$where.$key is $n, outside $min..$max", "bad_field")
    return n
}

internal fun JSONObject.int(key: String, where: String, min: Int = 0, max: Int = Int.MAX_VALUE): Int =
    long(key, where, min.toLong(), max.toLong()).toInt()

/** A finite JSON number (integer or not). */
internal fun JSONObject.number(key: String, where: String): Double {
    val v = raw(key, where)
    if (v !is Number || v is Double && !v.isFinite()) throw FormatException("$where.$key must be a number", "bad_field")
    return v.toDouble()
}

internal fun JSONArray.strings(where: String, maxLen: Int = 256): List<String> = (0 until length()).map { i ->
    val v = get(i)
    if (v !is String || v.length > maxLen) throw FormatException("$where[$i] must be a string", "bad_field")
    v
}

internal fun JSONArray.objects(where: String): List<JSONObject> = (0 until length()).map { i ->
    get(i) as? JSONObject ?: throw FormatException("$where[$i] must be an object", "bad_field")
}

internal fun JSONObject.keyList(): List<String> = keys().asSequence().toList().sorted()
