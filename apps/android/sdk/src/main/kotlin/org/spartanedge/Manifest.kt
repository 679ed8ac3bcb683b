package org.spartanedge

import org.json.JSONObject

/** One downloadable file: where it lives on the server, and the size and sha256 it must have. */
data class RemoteFile(val path: String, val sha256: String, val bytes: Long, val url: String)

/**
 * A backbone bundle for one target, as `GET /manifest` lists it under `backbones` (docs/server.md). [json] is the
 * server's object verbatim: the native engine reads its own fields from it (se_engine_open's backbone_json).
 */
class Backbone(
    val target: String,
    val fingerprint: String,
    val version: Int,
    val program: RemoteFile,
    val tokenizer: RemoteFile,
    val files: List<RemoteFile>,
    val maxSeqLength: Int,
    val maxLabels: Int,
    val json: JSONObject,
) {
    companion object {
        fun parse(o: JSONObject, target: String): Backbone {
            val where = "backbone $target"
            val files = o.array("files", where).objects("$where files").mapIndexed { i, f ->
                val w = "$where file $i"
                RemoteFile(Names.bundlePath(f.string("path", w), w), Names.sha256(f.string("sha256", w), w),
                    f.long("bytes", w), Names.serverPath(f.string("url", w), w))
            }
            if (files.isEmpty()) throw FormatException("$where: no files", "missing_field")
            if (files.map { it.path }.toSet().size != files.size) {
                throw FormatException("$where: a file is listed twice", "duplicate")
            }
            val programPath = o.string("program", where)
            val program = files.firstOrNull { it.path == programPath }
                ?: throw FormatException("$where: program '$programPath' is not among its files", "missing_file")
            val tokenizer = files.firstOrNull { it.path.substringAfterLast('/') == "tokenizer.json" }
                ?: throw FormatException("$where: no tokenizer.json among its files", "missing_file")
            return Backbone(target, Names.sha256(o.string("fingerprint", where), "$where fingerprint"),
                o.int("version", where, min = 1), program, tokenizer, files,
                o.int("max_seq_length", where, min = 2, max = 8192), o.int("max_labels", where, min = 1, max = 4096), o)
        }
    }
}

/** The latest memory of one task for one target (`GET /manifest` -> tasks.<task>.<target>). */
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
            val where = "task $task ($target)"
            val sha = Names.sha256(o.string("sha256", where), where)
            val file = RemoteFile("memories/$task.safetensors", sha, o.long("bytes", where),
                Names.serverPath(o.string("url", where), where))
            val isRegression = o.bool("is_regression", where)
            val labels = o.array("label_names", where).strings("$where label_names")
            if (!isRegression && labels.isEmpty()) throw FormatException("$where: no label names", "missing_field")
            return TaskMemory(task, o.int("version", where, min = 1), file,
                Names.sha256(o.string("backbone_fingerprint", where), "$where backbone_fingerprint"), labels,
                isRegression)
        }
    }
}

/** `GET /manifest` (format_version 1), reduced to one target and checked field by field before anything uses it. */
class Manifest(val target: String, val backbone: Backbone?, val tasks: Map<String, TaskMemory>) {
    companion object {
        const val FORMAT_VERSION = 1

        /** Throws [FormatException] for anything docs/server.md does not allow; a task without [target] is left out. */
        fun parse(text: String, target: String): Manifest {
            val o = parseObject(text, "manifest")
            val fv = o.long("format_version", "manifest", min = Long.MIN_VALUE)
            if (fv != FORMAT_VERSION.toLong()) {
                throw FormatException("manifest format_version $fv; this SDK reads $FORMAT_VERSION", "format_version")
            }
            val backbones = o.obj("backbones", "manifest")
            for (t in backbones.keyList()) Names.target(t, "manifest backbones")
            val backbone = if (backbones.has(target)) Backbone.parse(backbones.obj(target, "manifest"), target) else null
            val tasksObj = o.obj("tasks", "manifest")
            val tasks = tasksObj.keyList().mapNotNull { name ->
                Names.task(name, "manifest tasks")
                val perTarget = tasksObj.obj(name, "manifest tasks")
                if (perTarget.has(target)) TaskMemory.parse(name, perTarget.obj(target, "task $name"), target) else null
            }.associateBy { it.task }
            return Manifest(target, backbone, tasks)
        }
    }
}
