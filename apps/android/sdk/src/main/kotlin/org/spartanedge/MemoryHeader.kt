package org.spartanedge

import org.json.JSONObject
import java.io.File
import java.io.IOException
import java.io.RandomAccessFile

/**
 * The `spartan_edge_memory` header of a memory file (docs/formats.md, "Memory file"): what the SDK needs to decide,
 * before the engine sees the file, whether it is for this task and this backbone. The tensors themselves (shapes,
 * dtypes, finite values) are checked by the native runtime, their one home (se_validate_memory / load_memory).
 */
data class MemoryHeader(
    val task: String,
    val backboneFingerprint: String,
    val labelNames: List<String>,
    val isRegression: Boolean,
    val numOutputs: Int,
) {
    /** Throws [MismatchException] unless this memory is for [task] on the backbone [fingerprint]. */
    fun requireFor(task: String, fingerprint: String) {
        if (backboneFingerprint != fingerprint) {
            throw MismatchException("memory for '$task' was made for backbone ${backboneFingerprint.take(16)}…, but " +
                "the cached backbone is ${fingerprint.take(16)}…; refused", "fingerprint_mismatch")
        }
        if (this.task != task) throw MismatchException("memory file is for task '${this.task}', not '$task'; refused",
            "task_mismatch")
    }

    companion object {
        const val KEY = "spartan_edge_memory"
        const val FORMAT_VERSION = 1
        /** A recipe task's memory (its own LayerNorms and/or MLP head; the native runtime checks those tensors). */
        const val RECIPE_FORMAT_VERSION = 2
        private const val MAX_HEADER = 16L * 1024 * 1024  // the server's bound (demo_server/validate.py)

        fun read(file: File): MemoryHeader = try {
            RandomAccessFile(file, "r").use { f ->
                val size = f.length()
                if (size < 8) throw FormatException("${file.name}: shorter than a safetensors header", "truncated")
                val lenBytes = ByteArray(8).also { f.readFully(it) }
                var n = 0L
                for (i in 7 downTo 0) n = (n shl 8) or (lenBytes[i].toLong() and 0xff)  // little-endian u64
                if (n <= 0 || n > size - 8 || n > MAX_HEADER) {
                    throw FormatException("${file.name}: safetensors header length $n in a $size-byte file",
                        "bad_header_length")
                }
                val header = ByteArray(n.toInt()).also { f.readFully(it) }
                parse(String(header, Charsets.UTF_8), file.name)
            }
        } catch (e: IOException) {
            throw StorageException("${file.name}: cannot read: ${e.message}", e)
        }

        /** [headerJson]: the safetensors JSON header (the bytes after the 8-byte length). */
        fun parse(headerJson: String, name: String): MemoryHeader {
            val header = parseObject(headerJson, "$name header", "header_not_json", "header_not_object")
            val meta = if (header.has("__metadata__")) header.get("__metadata__") as? JSONObject
                ?: throw FormatException("$name: __metadata__ is not an object", "metadata_not_object") else null
            if (meta == null || !meta.has(KEY)) {
                throw FormatException("$name: no '$KEY' metadata; not a SPARTAN Edge memory", "metadata_missing")
            }
            val raw = meta.get(KEY) as? String
                ?: throw FormatException("$name: __metadata__ is not an object of strings", "metadata_not_object")
            val m = parseObject(raw, "$name $KEY", "metadata_not_json", "memory_metadata_not_object")
            checkFormatVersion(m, FORMAT_VERSION, RECIPE_FORMAT_VERSION, what = "$name $KEY")
            val isRegression = m.bool("is_regression", name)
            val labels = m.array("label_names", name).strings("$name label_names")
            val numOutputs = if (m.has("num_outputs")) m.int("num_outputs", name, min = 1)
            else if (isRegression) 1 else labels.size
            if (!isRegression && numOutputs != labels.size) {  // spartan_formats: label count == num_outputs
                throw FormatException("$name: num_outputs $numOutputs but ${labels.size} label names", "bad_field")
            }
            if (isRegression && numOutputs != 1) {
                throw FormatException("$name: a regression task has one output, not $numOutputs", "bad_field")
            }
            return MemoryHeader(Names.task(m.string("task", name), name),
                Names.fingerprint(m.string("backbone_fingerprint", name), "$name backbone_fingerprint"), labels,
                isRegression, numOutputs)
        }
    }
}
