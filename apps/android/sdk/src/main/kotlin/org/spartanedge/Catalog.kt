package org.spartanedge

import org.json.JSONObject

/** One downloadable file: where it lives on the server, and the size and sha256 it must have. */
data class RemoteFile(val path: String, val sha256: String, val bytes: Long, val url: String)

/**
 * A backbone bundle for one target, an entry of the catalog's `backbones` (docs/server.md; checked like
 * spartan_formats.catalog.read_catalog_entry_backbone). [json] is the server's object verbatim: the native engine
 * reads its own fields from it (se_engine_open's backbone_json), and the cache state stores it. [defaults] is the
 * recipe program's defaults file (docs/formats.md, "feeding rule"), null for a plain program.
 */
class Backbone(
    val target: String,
    val fingerprint: String,
    val version: Int,
    val program: RemoteFile,
    val tokenizer: RemoteFile,
    val defaults: RemoteFile?,
    val files: List<RemoteFile>,
    val maxSeqLength: Int,
    val maxLabels: Int,
    val json: JSONObject,
) {
    companion object {
        private const val MAX_FILES = 64
        private const val DEFAULTS_FILE = "defaults.safetensors"
        private val SHAPE_INTS = listOf("num_layers", "num_parents", "num_children", "top_k", "hidden_size")

        fun parse(o: JSONObject, target: String): Backbone {
            val w = "backbones.$target"
            val fingerprint = Names.fingerprint(o.string("fingerprint", w), "$w.fingerprint")
            val shape = o.obj("memory_shape", w)
            val ints = SHAPE_INTS.associateWith { shape.int(it, "$w.memory_shape", 1, 1 shl 20) }
            if (shape.number("temperature", "$w.memory_shape") <= 0) {
                throw FormatException("$w.memory_shape.temperature must be positive", "bad_field")
            }
            if (ints.getValue("top_k") > ints.getValue("num_parents")) {
                throw FormatException("$w.memory_shape.top_k exceeds num_parents", "bad_field")
            }
            val maxLabels = o.int("max_labels", w, 1, 1024)
            val maxSeq = o.int("max_seq_length", w, 2, 1 shl 16)
            for (k in listOf("hidden_size", "num_layers")) {
                if (o.present(k) && o.int(k, w, 1) != ints.getValue(k)) {
                    throw FormatException("$w.$k differs from memory_shape.$k", "bad_field")
                }
            }
            val list = o.array("files", w)
            if (list.length() !in 1..MAX_FILES) {
                throw FormatException("$w.files must list 1 to $MAX_FILES files", "bad_field")
            }
            val seen = mutableSetOf<String>()
            val files = list.objects("$w.files").mapIndexed { i, f ->
                val fw = "$w.files[$i]"
                val path = Names.bundlePath(f.string("path", fw), "$fw.path")
                val sha = Names.sha256(f.string("sha256", fw), "$fw.sha256")
                val bytes = f.long("bytes", fw, 0, 1L shl 50)
                if (!seen.add(path)) throw FormatException("$w.files lists '$path' twice", "duplicate_path")
                RemoteFile(path, sha, bytes, "")
            }
            val programPath = Names.bundlePath(o.string("program", w), "$w.program")
            if (programPath !in seen) throw FormatException("$w.program '$programPath' is not one of its files", "bad_field")
            if (o.present("tokenizer")) {
                for (p in o.array("tokenizer", w).strings("$w.tokenizer")) {
                    if (Names.bundlePath(p, "$w.tokenizer") !in seen) {
                        throw FormatException("$w.tokenizer names '$p', which is not one of its files", "bad_field")
                    }
                }
            }
            val quantize = if (o.present("quantize")) o.string("quantize", w) else null
            if (quantize != null && quantize != "int8") {
                throw FormatException("$w.quantize must be null or 'int8'", "bad_field")
            }
            // Catalog entries add version, url and one url per file.
            val version = o.int("version", w, 1)
            Names.serverPath(o.string("url", w, 2048), "$w.url")
            if (o.present("published_at")) o.number("published_at", w)
            val withUrls = files.zip(list.objects("$w.files")) { f, raw ->
                f.copy(url = Names.serverPath(raw.string("url", "$w.files", 2048), "$w.files.url"))
            }
            val program = withUrls.first { it.path == programPath }
            val tokenizer = withUrls.firstOrNull { it.path.substringAfterLast('/') == "tokenizer.json" }
                ?: throw FormatException("$w: no tokenizer.json among its files", "bad_field")
            val defaults = withUrls.firstOrNull { it.path.substringAfterLast('/') == DEFAULTS_FILE }
            return Backbone(target, fingerprint, version, program, tokenizer, defaults, withUrls, maxSeq, maxLabels, o)
        }
    }
}

/** The latest memory of one task for one target (catalog `tasks.<task>.<target>`). */
data class TaskMemory(
    val task: String,
    val version: Int,
    val file: RemoteFile,
    val backboneFingerprint: String,
    val labelNames: List<String>,
    val isRegression: Boolean,
) {
    companion object {
        fun parse(task: String, o: JSONObject, target: String): TaskMemory {
            val w = "tasks.$task.$target"
            val version = o.int("version", w, 1)
            val sha = Names.sha256(o.string("sha256", w), "$w.sha256")
            val bytes = o.long("bytes", w, 0, 1L shl 40)
            val fp = Names.fingerprint(o.string("backbone_fingerprint", w), "$w.backbone_fingerprint")
            val url = Names.serverPath(o.string("url", w, 2048), "$w.url")
            if (o.present("dtype") && o.get("dtype") !in listOf("fp32", "fp16")) {
                throw FormatException("$w.dtype is not fp32 or fp16", "bad_dtype")
            }
            // Informational here (the memory file's own header decides); typed when present.
            val labels = if (o.present("label_names")) o.array("label_names", w).strings("$w.label_names") else listOf()
            val isRegression = o.present("is_regression") && o.bool("is_regression", w)
            return TaskMemory(task, version, RemoteFile("memories/$task.safetensors", sha, bytes, url), fp, labels,
                isRegression)
        }
    }
}

/**
 * The catalog (`GET /manifest`, format_version 1), checked field by field like spartan_formats.read_catalog
 * (every target and task, not only the one this device uses), then reduced to [target].
 */
class Catalog(val target: String, val backbone: Backbone?, val tasks: Map<String, TaskMemory>, val json: JSONObject) {
    companion object {
        const val FORMAT_VERSION = 1
        const val MAX_BYTES = 16 * 1024 * 1024

        fun parse(text: String, target: String): Catalog {
            if (text.length > MAX_BYTES) throw FormatException("catalog is over $MAX_BYTES bytes", "too_large")
            return parse(parseObject(text, "catalog"), target)
        }

        fun parse(o: JSONObject, target: String): Catalog {
            checkFormatVersion(o, FORMAT_VERSION, what = "catalog")
            if (o.has("targets")) o.array("targets", "catalog").strings("targets").forEach { Names.target(it, "target") }
            val backbones = o.obj("backbones", "catalog")
            val parsed = backbones.keyList().associateWith { t ->
                Backbone.parse(backbones.obj(Names.target(t, "target"), "backbones"), t)
            }
            val tasksObj = o.obj("tasks", "catalog")
            val tasks = mutableMapOf<String, TaskMemory>()
            for (name in tasksObj.keyList()) {
                Names.task(name, "task name")
                val per = tasksObj.obj(name, "tasks")
                for (t in per.keyList()) {
                    val entry = TaskMemory.parse(name, per.obj(Names.target(t, "target"), "tasks.$name"), t)
                    if (t == target) tasks[name] = entry
                }
            }
            return Catalog(target, parsed[target], tasks, o)
        }
    }
}

/** The document's format_version, which must be one of [known] (the versions this SDK reads). */
internal fun checkFormatVersion(o: JSONObject, vararg known: Int, what: String): Int {
    val v = o.raw("format_version", what)
    if (v !is Int || v !in known) {
        throw FormatException("$what has format_version $v; this SDK reads ${known.joinToString(" or ")}",
            "bad_format_version")
    }
    return v
}
