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
        if (stateFile.isFile) CacheState.fromJson(JSONObject(stateFile.readText())) else CacheState()
    } catch (e: Exception) {
        CacheState()  // an unreadable state file costs a re-download, never a crash (blobs are re-verified anyway)
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
            val w = "cached memory $task"
            return CachedMemory(Names.task(task, w), o.int("version", w, 1), Names.sha256(o.string("sha256", w), w),
                Names.sha256(o.string("backbone_fingerprint", w), w), o.array("label_names", w).strings(w),
                o.bool("is_regression", w), o.int("num_outputs", w, 1))
        }
    }
}

/** state.json: the manifest seen last (with its ETag), the backbone in use, the last good memory per task. */
class CacheState(
    var manifestText: String? = null,
    var manifestEtag: String? = null,
    var backbone: Backbone? = null,
    val memories: MutableMap<String, CachedMemory> = sortedMapOf(),
) {
    fun toJson(): JSONObject {
        val o = JSONObject()
        manifestText?.let { o.put("manifest", it) }
        manifestEtag?.let { o.put("manifest_etag", it) }
        backbone?.let { o.put("backbone", JSONObject().put("target", it.target).put("view", it.json)) }
        o.put("memories", JSONObject().also { m -> memories.forEach { (k, v) -> m.put(k, v.toJson()) } })
        return o
    }

    companion object {
        /** Everything read back is validated like a network document: the state file is not trusted more. */
        fun fromJson(o: JSONObject): CacheState {
            val bb = o.optJSONObject("backbone")?.let { Backbone.parse(it.obj("view", "state"), it.string("target",
                "state")) }
            val mems = o.optJSONObject("memories") ?: JSONObject()
            return CacheState(o.stringOrNull("manifest", "state"), o.stringOrNull("manifest_etag", "state"), bb,
                mems.keyList().associateWith { CachedMemory.fromJson(it, mems.obj(it, "state")) }.toSortedMap())
        }
    }
}
