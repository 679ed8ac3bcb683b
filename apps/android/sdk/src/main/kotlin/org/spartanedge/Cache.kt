package org.spartanedge

import org.json.JSONArray
import org.json.JSONObject
import java.io.File
import java.io.FileOutputStream
import java.io.IOException
import java.nio.file.AtomicMoveNotSupportedException
import java.nio.file.Files
import java.nio.file.StandardCopyOption
import java.security.MessageDigest

/**
 * The on-device cache, laid out like apps/client's (apps/client/cache.py):
 *
 *     <root>/blobs/<sha256>         complete, verified files, never modified (a new version is a new name)
 *     <root>/partial/<sha256>.part  downloads in progress, resumed with Range
 *     <root>/state.json             the last manifest, the backbone in use, the last good memory per task
 *
 * Every file name is a checked 64-hex sha256: nothing from the network is ever joined onto a path.
 */
class Cache(val root: File) {
    val blobs = File(root, "blobs")
    val partial = File(root, "partial")
    private val stateFile = File(root, "state.json")

    init {
        for (d in listOf(blobs, partial)) {
            if (!d.isDirectory && !d.mkdirs()) throw StorageException("cannot create cache folder $d")
        }
    }

    fun blob(sha256: String): File = File(blobs, Names.sha256(sha256, "cache key"))
    fun has(sha256: String): Boolean = blob(sha256).isFile
    fun partialFile(sha256: String): File = File(partial, Names.sha256(sha256, "cache key") + ".part")

    /** Moves a verified download into blobs/ (an atomic rename in the same folder tree). */
    fun install(part: File, sha256: String): File {
        val dest = blob(sha256)
        moveAtomically(part, dest)
        return dest
    }

    /** Re-hashes a cached file before use (storage rots, files get tampered with); a bad one is deleted. */
    fun verified(sha256: String): Boolean {
        val f = blob(sha256)
        if (!f.isFile) return false
        if (sha256Of(f) == sha256) return true
        f.delete()
        return false
    }

    fun loadState(): CacheState = try {
        if (stateFile.isFile) CacheState.parse(stateFile.readText()) else CacheState()
    } catch (e: SpartanEdgeException) {
        CacheState()  // an unreadable state file costs a re-download, never a crash (blobs are re-verified anyway)
    } catch (e: IOException) {
        CacheState()
    }

    fun saveState(state: CacheState) = writeAtomically(stateFile, state.toJson().toString(1).toByteArray())

    companion object {
        fun sha256Of(file: File): String {
            val md = MessageDigest.getInstance("SHA-256")
            file.inputStream().use { input ->
                val buf = ByteArray(1 shl 16)
                while (true) {
                    val n = input.read(buf)
                    if (n < 0) break
                    md.update(buf, 0, n)
                }
            }
            return md.digest().joinToString("") { "%02x".format(it) }
        }

        /** Temporary file beside [dest], fsync, rename: a crash leaves the old file or the new one, never half. */
        fun writeAtomically(dest: File, data: ByteArray) {
            val tmp = File.createTempFile(".${dest.name}.", ".tmp", dest.parentFile)
            try {
                FileOutputStream(tmp).use { out ->
                    out.write(data)
                    out.fd.sync()
                }
                moveAtomically(tmp, dest)
            } finally {
                tmp.delete()
            }
        }

        fun moveAtomically(src: File, dest: File) {
            try {
                Files.move(src.toPath(), dest.toPath(), StandardCopyOption.ATOMIC_MOVE,
                    StandardCopyOption.REPLACE_EXISTING)
            } catch (e: AtomicMoveNotSupportedException) {
                throw StorageException("cannot rename $src to $dest atomically", e)
            } catch (e: IOException) {
                throw StorageException("cannot rename $src to $dest: ${e.message}", e)
            }
        }
    }
}

/** The last good memory of one task, as state.json keeps it. */
data class CachedMemory(
    val task: String,
    val version: Int,
    val sha256: String,
    val backboneFingerprint: String,
    val labelNames: List<String>,
    val isRegression: Boolean,
    val numOutputs: Int,
) {
    fun toJson(): JSONObject = JSONObject().put("version", version).put("sha256", sha256)
        .put("backbone_fingerprint", backboneFingerprint).put("label_names", JSONArray(labelNames))
        .put("is_regression", isRegression).put("num_outputs", numOutputs)

    companion object {
        fun fromJson(task: String, o: JSONObject): CachedMemory {
            val w = "memories.$task"
            return CachedMemory(Names.task(task, w), o.int("version", w, 1), Names.sha256(o.string("sha256", w), w),
                Names.fingerprint(o.string("backbone_fingerprint", w), w), o.array("label_names", w).strings(w),
                o.bool("is_regression", w), o.int("num_outputs", w, 1))
        }
    }
}

/**
 * state.json (format_version 1, docs/formats.md `cache_state`, the same document spartan_formats.cache_state reads):
 * the catalog seen last with its ETag, the backbone in use (its catalog entry plus `target`), the last good memory
 * per task.
 */
class CacheState(
    var catalog: JSONObject? = null,
    var catalogEtag: String? = null,
    var backbone: Backbone? = null,
    val memories: MutableMap<String, CachedMemory> = sortedMapOf(),
) {
    fun toJson(): JSONObject = JSONObject()
        .put("format_version", FORMAT_VERSION)
        .put("catalog", catalog ?: JSONObject.NULL)
        .put("catalog_etag", catalogEtag ?: JSONObject.NULL)
        .put("backbone", backbone?.let { JSONObject(it.json.toString()).put("target", it.target) } ?: JSONObject.NULL)
        .put("memories", JSONObject().also { m -> memories.forEach { (k, v) -> m.put(k, v.toJson()) } })

    companion object {
        const val FORMAT_VERSION = 1

        fun parse(text: String): CacheState = fromJson(parseObject(text, "cache state"))

        /** Everything read back is validated like a network document: the state file is not trusted more. */
        fun fromJson(o: JSONObject): CacheState {
            checkFormatVersion(o, FORMAT_VERSION, what = "cache state")
            var catalog: JSONObject? = null
            var etag: String? = null
            if (o.present("catalog")) {
                catalog = o.obj("catalog", "cache state")
                Catalog.parse(catalog, "android")  // validates every target; the result is re-read when used
                etag = o.stringOrNull("catalog_etag", "cache state")
            }
            val bb = if (o.present("backbone")) o.obj("backbone", "cache state").let {
                Backbone.parse(it, Names.target(it.string("target", "backbone"), "target"))
            } else null
            val mems = if (o.has("memories")) o.obj("memories", "cache state") else JSONObject()
            return CacheState(catalog, etag, bb,
                mems.keyList().associateWith { CachedMemory.fromJson(Names.task(it, "task name"), mems.obj(it,
                    "memories")) }.toSortedMap())
        }
    }
}
