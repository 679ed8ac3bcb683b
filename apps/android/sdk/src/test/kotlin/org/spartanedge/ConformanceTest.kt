package org.spartanedge

import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.Test
import java.io.File

/**
 * The conformance vectors (tests/conformance/cases.json, docs/formats.md): every case the device reads goes through
 * the SDK's readers, which must accept the valid ones and refuse the invalid ones with exactly the listed code.
 * catalog + cache_state: the Kotlin readers; memory: the native runtime through JNI (its one memory reader), plus
 * the Kotlin task check for a `task` context. backbone and dist_manifest documents are publisher/server input, not
 * read on a device, so they are not run here.
 */
class ConformanceTest {
    private val root = File(System.getProperty("spartanedge.repo", "."), "tests/conformance")

    private fun cases(kind: String): List<JSONObject> {
        val f = File(root, "cases.json")
        assumeTrue(f.isFile, "no $f")
        val all = JSONArray(f.readText())
        return (0 until all.length()).map { all.getJSONObject(it) }.filter { it.getString("kind") == kind }
    }

    /** Runs [read] on each case; returns "name: expected vs got" for every disagreement. */
    private fun check(kind: String, read: (JSONObject, File) -> Unit): List<String> {
        val cases = cases(kind)
        assertTrue(cases.isNotEmpty(), "no $kind cases")
        return cases.mapNotNull { c ->
            val want = if (c.getString("verdict") == "valid") "valid" else c.getString("error")
            val got = try {
                read(c, File(root, c.getString("file")))
                "valid"
            } catch (e: SpartanEdgeException) {
                e.code
            }
            if (got == want) null else "${c.getString("name")}: expected $want, got $got"
        }
    }

    @Test
    fun catalogCases() {
        val bad = check("catalog") { _, f -> Catalog.parse(f.readText(), "android") }
        assertEquals(listOf<String>(), bad)
    }

    @Test
    fun cacheStateCases() {
        val bad = check("cache_state") { _, f -> CacheState.parse(f.readText()) }
        assertEquals(listOf<String>(), bad)
    }

    @Test
    fun memoryCasesThroughTheNativeRuntime() {
        Fixtures.requireEngine()
        val bad = check("memory") { c, f ->
            val ctx = c.optJSONObject("context")
            val backbone = ctx?.optString("backbone")?.takeIf { it.isNotEmpty() }?.let { File(root, it).readText() }
            NativeEngine.validateMemory(f, backbone)
            ctx?.optString("task")?.takeIf { it.isNotEmpty() }?.let { task ->
                val h = MemoryHeader.read(f)
                if (h.task != task) throw MismatchException("memory is for '${h.task}', not '$task'", "task_mismatch")
            }
        }
        assertEquals(listOf<String>(), bad)
    }
}
