package org.spartanedge

import org.json.JSONArray
import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import kotlin.test.assertFailsWith
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.net.URL

class CatalogTest {
    private val sha = "0123456789abcdef".repeat(4)
    private val fp = "f".repeat(64)

    /** A manifest in the shape GET /manifest returns (docs/server.md), small enough to edit per case. */
    private fun manifest(): JSONObject {
        val files = JSONArray()
            .put(JSONObject().put("path", "backbone.pte").put("sha256", sha).put("bytes", 10)
                .put("url", "/backbone/android/backbone.pte?fingerprint=$fp"))
            .put(JSONObject().put("path", "tokenizer.json").put("sha256", sha.reversed()).put("bytes", 5)
                .put("url", "/backbone/android/tokenizer.json?fingerprint=$fp"))
        val shape = JSONObject().put("num_layers", 2).put("num_parents", 4).put("num_children", 2).put("top_k", 2)
            .put("temperature", 1.6).put("hidden_size", 8)
        val bb = JSONObject().put("target", "android").put("version", 1).put("fingerprint", fp)
            .put("max_seq_length", 64).put("max_labels", 8).put("program", "backbone.pte").put("files", files)
            .put("memory_shape", shape).put("url", "/backbone/android?fingerprint=$fp")
        val task = JSONObject().put("version", 2).put("bytes", 100).put("sha256", sha).put("backbone_fingerprint", fp)
            .put("label_names", JSONArray(listOf("negative", "positive"))).put("is_regression", false)
            .put("url", "/memories/sst2?target=android&version=2")
        return JSONObject().put("format_version", 1).put("backbones", JSONObject().put("android", bb))
            .put("tasks", JSONObject().put("sst2", JSONObject().put("android", task)))
    }

    private fun JSONObject.bb() = getJSONObject("backbones").getJSONObject("android")
    private fun JSONObject.task() = getJSONObject("tasks").getJSONObject("sst2").getJSONObject("android")
    private fun refused(edit: (JSONObject) -> Unit): FormatException {
        val m = manifest().also(edit)
        return assertFailsWith<FormatException> { Catalog.parse(m.toString(), "android") }
    }

    @Test
    fun parsesTheServersShape() {
        val m = Catalog.parse(manifest().toString(), "android")
        val bb = m.backbone!!
        assertEquals(fp, bb.fingerprint)
        assertEquals("backbone.pte", bb.program.path)
        assertEquals("tokenizer.json", bb.tokenizer.path)
        assertEquals(listOf("negative", "positive"), m.tasks["sst2"]!!.labelNames)
        assertEquals(2, m.tasks["sst2"]!!.version)
        assertTrue(Catalog.parse(manifest().toString(), "ios").tasks.isEmpty())  // no ios entries: none listed
    }

    @Test
    fun refusesBadDigestsNamesPathsAndUrls() {
        refused { it.task().put("sha256", sha.uppercase()) }
        refused { it.task().put("sha256", sha.take(63)) }
        refused { it.task().put("sha256", "../../etc/passwd") }
        assertEquals("bad_fingerprint", refused { it.bb().put("fingerprint", "short") }.code)
        refused { it.bb().getJSONArray("files").getJSONObject(0).put("path", "../evil.pte") }
        refused { it.bb().getJSONArray("files").getJSONObject(1).put("path", "/abs/tokenizer.json") }
        refused { it.getJSONObject("tasks").put("../x", JSONObject()) }
        refused { it.getJSONObject("tasks").put("a/b", JSONObject()) }
        for (url in listOf("http://evil.example/x", "//evil.example/x", "/memories/../../x", "/a\\b", "memories/x",
                           "/x#frag", "/x@evil.example", "/a b", "/x/..")) {
            val e = refused { it.task().put("url", url) }
            assertEquals("bad_url", e.code, url)
        }
    }

    @Test
    fun refusesWrongTypesAndVersions() {
        assertEquals("bad_format_version", refused { it.put("format_version", 2) }.code)
        assertEquals("bad_format_version", refused { it.put("format_version", "1") }.code)
        assertEquals("bad_field", refused { it.task().put("bytes", "100") }.code)
        assertEquals("bad_field", refused { it.task().put("version", 2.5) }.code)
        val float = manifest().toString().replace("\"version\":2,", "\"version\":2.0,")
        assertTrue("2.0" in float)
        assertEquals("bad_field", assertFailsWith<FormatException> { Catalog.parse(float, "android") }.code)
        assertEquals("bad_field", refused { it.task().put("is_regression", "false") }.code)
        assertEquals("bad_field", refused { it.task().put("bytes", -1) }.code)
        assertEquals("bad_dtype", refused { it.task().put("dtype", "int8") }.code)
        assertEquals("missing_field", refused { it.task().remove("sha256") }.code)
        assertEquals("bad_field", refused { it.bb().put("program", "other.pte") }.code)
        assertEquals("bad_fingerprint", refused { it.task().put("backbone_fingerprint", fp.uppercase()) }.code)
        assertEquals("duplicate_path", refused {
            it.bb().getJSONArray("files").getJSONObject(1).put("path", "backbone.pte")
        }.code)
        // An entry for another target is checked too: a hostile catalog is refused whole.
        assertEquals("bad_sha256", refused {
            it.getJSONObject("tasks").getJSONObject("sst2").put("ios", JSONObject(it.task().toString()).put("sha256", "x"))
        }.code)
        assertEquals("not_json", assertFailsWith<FormatException> { Catalog.parse("{not json", "android") }.code)
        assertEquals("not_json", assertFailsWith<FormatException> { Catalog.parse("{} trailing", "android") }.code)
        assertEquals("not_object", assertFailsWith<FormatException> { Catalog.parse("[1, 2]", "android") }.code)
        // org.json alone would accept each of these; docs/formats.md's strict JSON does not.
        val text = manifest().toString()
        for (lenient in listOf(text.replaceFirst("{", "{\"format_version\":1,"),  // a repeated key
                               text.replaceFirst("{", "{/* c */"), text.replaceFirst("\"format_version\"", "format_version"),
                               text.replaceFirst("\"format_version\":1", "'format_version':1"),
                               text.dropLast(1) + ",}", text.replaceFirst(":1,", "=>1,"), text.replaceFirst(":1,", ":01,"))) {
            assertEquals("not_json", assertFailsWith<FormatException>(lenient) { Catalog.parse(lenient, "android") }.code)
        }
    }

    @Test
    fun namesRules() {
        assertTrue(Names.isName("sst2") && Names.isName("my-task_1.v2"))
        assertFalse(Names.isName("..") || Names.isName("a..b") || Names.isName(".hidden") || Names.isName(""))
        assertFalse(Names.isName("x".repeat(65)) || Names.isName("tâche") || Names.isName("a b") || Names.isName("a\n"))
        assertTrue(Names.isServerPath("/memories/sst2?target=android&version=2"))
        assertFalse(Names.isServerPath("/a/../x") || Names.isServerPath("/memories/x?y=1#z"))
        assertFalse(Names.isBundlePath("a//b") || Names.isBundlePath("a/") || Names.isBundlePath(".x"))
    }

    @Test
    fun theRealServersManifestParses() {
        val server = Fixtures.server
        val m = Catalog.parse(URL("$server/manifest").readText(), "android")
        assertEquals(setOf("sst2", "rte", "spare"), m.tasks.keys)
        val local = JSONObject(File(Fixtures.dist, "manifest.json").readText())
        val bb = m.backbone!!
        assertEquals(local.getJSONObject("backbone").getString("fingerprint"), bb.fingerprint)
        for (t in m.tasks.values) assertEquals(bb.fingerprint, t.backboneFingerprint)
    }

    @Test
    fun memoryHeaderOfARealFileAndBrokenOnes(@TempDir dir: File) {
        val h = MemoryHeader.read(Fixtures.memoryFile("rte"))
        assertEquals("rte", h.task)
        assertEquals(listOf("entailment", "not_entailment"), h.labelNames)
        assertEquals(2, h.numOutputs)
        val fp = Catalog.parse(URL("${Fixtures.server}/manifest").readText(), "android").backbone!!.fingerprint
        h.requireFor("rte", fp)
        assertEquals("task_mismatch", assertFailsWith<MismatchException> { h.requireFor("sst2", fp) }.code)
        assertEquals("fingerprint_mismatch", assertFailsWith<MismatchException> { h.requireFor("rte", "0".repeat(64)) }.code)

        val bytes = Fixtures.memoryFile("rte").readBytes()
        val cut = File(dir, "cut").apply { writeBytes(bytes.copyOf(100)) }
        assertEquals("bad_header_length", assertFailsWith<FormatException> { MemoryHeader.read(cut) }.code)
        val tiny = File(dir, "tiny").apply { writeBytes(ByteArray(3)) }
        assertEquals("truncated", assertFailsWith<FormatException> { MemoryHeader.read(tiny) }.code)
        val huge = File(dir, "huge").apply { writeBytes(bytes.copyOf().also { it[7] = 0x7f }) }
        assertEquals("bad_header_length", assertFailsWith<FormatException> { MemoryHeader.read(huge) }.code)
        assertEquals("metadata_missing", assertFailsWith<FormatException> {
            MemoryHeader.parse("""{"P": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""", "x")
        }.code)
    }
}
