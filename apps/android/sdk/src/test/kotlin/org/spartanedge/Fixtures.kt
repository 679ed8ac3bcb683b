package org.spartanedge

import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import java.io.File
import java.net.HttpURLConnection
import java.net.URL
import kotlin.math.abs

/** What tests/test_android_sdk.py prepared: a real server with a published export and apps.client's predictions. */
object Fixtures {
    private val json: JSONObject? by lazy {
        System.getenv("SPARTAN_EDGE_TEST_FIXTURES")?.let { JSONObject(File(it).readText()) }
    }

    /** The fixture document; skips the calling test when the tests run without the pytest fixture. */
    fun require(): JSONObject {
        assumeTrue(json != null, "SPARTAN_EDGE_TEST_FIXTURES not set (run through tests/test_android_sdk.py)")
        return json!!
    }

    fun requireEngine() {
        assumeTrue(NativeEngine.available, "native runtime / JNI library not built (apps/native, apps/android/jni)")
    }

    val server: String get() = require().getString("server")
    val port: Int get() = require().getInt("port")
    val dist: File get() = File(require().getString("dist"))
    val backboneBytes: Long get() = require().getLong("backbone_bytes")
    fun memoryBytes(task: String): Long = require().getJSONObject("memory_bytes").getLong(task)
    fun memoryFile(task: String): File = File(dist, "android/memories/$task.safetensors")

    /** [got] equals apps.client's [want] up to float rounding (another runtime binding, same program). */
    fun assertLogits(want: JSONArray, got: List<Float>, what: String) {
        assertEquals(want.length(), got.size, what)
        for (j in 0 until want.length()) {
            assertTrue(abs(want.getDouble(j) - got[j]) < 1e-4, "$what logit $j: $want vs $got")
        }
    }

    /** Publishes a memory file the way `python -m demo_server publish` does (POST, sha256 header, bearer token). */
    fun publishMemory(task: String, file: File) {
        val body = file.readBytes()
        val conn = URL("$server/memories/$task?target=android").openConnection() as HttpURLConnection
        conn.requestMethod = "POST"
        conn.doOutput = true
        conn.setRequestProperty("Authorization", "Bearer ${require().getString("token")}")
        conn.setRequestProperty("X-Content-SHA256", Cache.sha256Of(file))
        conn.setRequestProperty("Content-Type", "application/octet-stream")
        conn.setFixedLengthStreamingMode(body.size)
        conn.outputStream.use { it.write(body) }
        val status = conn.responseCode
        check(status in 200..299) { "publish $task: HTTP $status ${conn.errorStream?.readBytes()?.decodeToString()}" }
    }
}
