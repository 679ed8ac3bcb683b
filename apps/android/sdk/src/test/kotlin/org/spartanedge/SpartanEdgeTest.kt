package org.spartanedge

import org.json.JSONObject
import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import kotlin.test.assertFailsWith
import org.junit.jupiter.api.io.TempDir
import java.io.File
import kotlin.math.abs

/** The public API against the real server: downloads, task switching, offline mode, refusals, predictions. */
class SpartanEdgeTest {
    @Test
    fun firstRunFetchesBackboneAndOneMemoryThenOnlyMemories(@TempDir dir: File) {
        val edge = SpartanEdge(dir, Fixtures.server, engines = null)
        val listed = edge.tasks()
        assertEquals(setOf("sst2", "rte", "spare"), listed.map { it.name }.toSet())
        assertTrue(listed.none { it.cached })
        assertEquals(Fixtures.backboneBytes + Fixtures.memoryBytes("sst2"), edge.ensureTask("sst2"))
        assertEquals(Fixtures.memoryBytes("rte"), edge.ensureTask("rte"))  // switching: only the new memory
        assertEquals(0, edge.ensureTask("sst2"))
        assertEquals(0, edge.ensureBackbone())
        assertEquals(setOf("sst2", "rte"), edge.tasks().filter { it.cached }.map { it.name }.toSet())

        // A new instance on the same cache (the app restarted) fetches nothing.
        val again = SpartanEdge(dir, Fixtures.server, engines = null)
        assertEquals(0, again.ensureTask("rte"))
        // Offline: what is cached is listed; what is not is a clear error.
        val offline = SpartanEdge(dir, null, Options(offline = true), engines = null)
        assertEquals(setOf("sst2", "rte"), offline.tasks().map { it.name }.toSet())
        assertEquals(0, offline.ensureTask("sst2"))
        val e = assertFailsWith<NotCachedException> { offline.ensureTask("spare") }
        assertTrue("no memory for task 'spare'" in e.message!!, e.message)
    }

    @Test
    fun offlineWithAColdCacheAndBadArguments(@TempDir dir: File) {
        val cold = SpartanEdge(dir, null, Options(offline = true), engines = null)
        assertTrue(cold.tasks().isEmpty())
        assertFailsWith<NotCachedException> { cold.ensureBackbone() }
        assertFailsWith<IllegalArgumentException> { SpartanEdge(dir, null, engines = null) }
        assertFailsWith<IllegalArgumentException> { SpartanEdge(dir, "file:///etc", engines = null) }
        val edge = SpartanEdge(dir, Fixtures.server, engines = null)
        assertFailsWith<FormatException> { edge.ensureTask("../../etc") }
        assertFailsWith<NotFoundException> { edge.ensureTask("nosuchtask") }
    }

    @Test
    fun aCachedFileThatRotsIsFetchedAgainAlone(@TempDir dir: File) {
        SpartanEdge(dir, Fixtures.server, engines = null).ensureTask("sst2")
        val sha = Cache.sha256Of(Fixtures.memoryFile("sst2"))
        val blob = File(dir, "blobs/$sha")
        fun rot() = blob.writeBytes(blob.readBytes().also { it[it.size - 1] = (it[it.size - 1] + 1).toByte() })
        rot()
        // Offline there is no server to re-fetch from: a clear refusal, never a run on rotten bytes.
        val offline = SpartanEdge(dir, null, Options(offline = true), engines = null)
        val e = assertFailsWith<IntegrityException> { offline.ensureTask("sst2") }
        assertTrue("missing or corrupt and there is no server" in e.message!!, e.message)
        // Online, only that file is fetched again (the backbone is re-hashed, not re-downloaded).
        assertEquals(Fixtures.memoryBytes("sst2"), SpartanEdge(dir, Fixtures.server, engines = null).ensureTask("sst2"))
        assertEquals(sha, Cache.sha256Of(blob))
    }

    @Test
    fun aServerThatIsDownOrAnswersGarbageFallsBackToTheCache(@TempDir dir: File) {
        SpartanEdge(dir, Fixtures.server, engines = null).ensureTask("rte")
        val down = SpartanEdge(dir, "http://127.0.0.1:1", engines = null)
        assertEquals(0, down.ensureTask("rte"))
        assertTrue(down.warnings().single().startsWith("cannot reach"), down.warnings().toString())
        assertFailsWith<NetworkException> { down.ensureTask("sst2") }  // not cached: the problem itself
        val stateFile = File(dir, "state.json")  // forget the ETag, so the server sends the catalog (not a 304)
        stateFile.writeText(JSONObject(stateFile.readText()).put("catalog_etag", JSONObject.NULL).toString())
        FaultProxy(Fixtures.port) { line ->
            if (line.startsWith("GET /manifest")) FaultProxy.Fault.FlipByte(0) else FaultProxy.Fault.Pass
        }.use { proxy ->
            val garbage = SpartanEdge(dir, proxy.url, engines = null)
            assertEquals(0, garbage.ensureTask("rte"))
            assertTrue("is not a valid catalog" in garbage.warnings().single(), garbage.warnings().toString())
        }
    }

    @Test
    fun aTamperedNewVersionIsRefusedAndTheLastGoodCopyKept(@TempDir dir: File) {
        SpartanEdge(dir, Fixtures.server, engines = null).ensureTask("spare")  // v1 cached
        val v2 = File(Fixtures.require().getString("spare_v2"))
        Fixtures.publishMemory("spare", v2)
        FaultProxy(Fixtures.port) { line ->
            if (line.startsWith("GET /memories/spare")) FaultProxy.Fault.FlipByte(1000) else FaultProxy.Fault.Pass
        }.use { proxy ->
            val edge = SpartanEdge(dir, proxy.url, engines = null)
            assertEquals(2, edge.tasks().single { it.name == "spare" }.version)
            assertEquals(0, edge.ensureTask("spare"))  // refused; v1 stays
            val state = JSONObject(File(dir, "state.json").readText())
            assertEquals(1, state.getJSONObject("memories").getJSONObject("spare").getInt("version"))
        }
        assertEquals(v2.length(), SpartanEdge(dir, Fixtures.server, engines = null).ensureTask("spare"))
        val state = JSONObject(File(dir, "state.json").readText())
        assertEquals(2, state.getJSONObject("memories").getJSONObject("spare").getInt("version"))
    }

    @Test
    fun predictionsEqualTheReferenceClient(@TempDir dir: File) {
        Fixtures.requireEngine()
        val expected = Fixtures.require().getJSONArray("expected")
        SpartanEdge(dir, Fixtures.server).use { edge ->
            var first = true
            for (i in 0 until expected.length()) {
                val want = expected.getJSONObject(i)
                val task = want.getString("task")
                val pair = if (want.isNull("pair")) null else want.getString("pair")
                val got = edge.classify(task, want.getString("text"), pair)
                if (first) assertEquals(Fixtures.backboneBytes + Fixtures.memoryBytes(task), got.bytesFetched)
                first = false
                assertEquals(want.getString("label"), got.label, "$task: ${want.getString("text")}")
                Fixtures.assertLogits(want.getJSONArray("logits"), got.logits, task)
                val probs = want.getJSONObject("probabilities")
                for (name in probs.keys()) assertTrue(abs(probs.getDouble(name) - got.probabilities.getValue(name)) < 1e-4)
                assertEquals(probs.keys().asSequence().toList(), got.probabilities.keys.toList())
            }
            assertEquals(1, edge.programLoads)  // two tasks, one program load: switching swaps only the memory
            assertEquals(0, edge.classify("rte", "again", "once more").bytesFetched)
        }
        // Offline with a warm cache: same answer, no network.
        val want = expected.getJSONObject(0)
        SpartanEdge(dir, null, Options(offline = true)).use { edge ->
            val got = edge.classify(want.getString("task"), want.getString("text"))
            assertEquals(0, got.bytesFetched)
            assertEquals(want.getString("label"), got.label)
        }
    }

    @Test
    fun theEngineTokenizesLikeHuggingFace(@TempDir dir: File) {
        Fixtures.requireEngine()
        val expected = Fixtures.require().getJSONArray("expected")
        val edge = SpartanEdge(dir, Fixtures.server)
        edge.ensureTask("sst2")
        val bb = Cache(dir).loadState().backbone!!
        NativeEngine.open(bb.json.toString(), File(dir, "blobs/${bb.program.sha256}"),
            File(dir, "blobs/${bb.tokenizer.sha256}")).use { eng ->
            eng.loadMemory(File(dir, "blobs/${Cache.sha256Of(Fixtures.memoryFile("sst2"))}"))
            for (i in 0 until expected.length()) {
                val want = expected.getJSONObject(i)
                val pair = if (want.isNull("pair")) null else want.getString("pair")
                val ids = want.getJSONArray("input_ids")
                val got = eng.classify(want.getString("text"), pair).inputIds
                assertArrayEquals(LongArray(ids.length()) { ids.getLong(it) }, got, want.getString("text"))
            }
            // A memory for another task is still a valid memory: loading it switches the active task.
            eng.loadMemory(Fixtures.memoryFile("rte"))
            assertEquals("rte", (eng as NativeEngine).activeTask().first)
            // A broken file is refused and the active memory stays.
            val broken = File(dir, "broken.safetensors").apply { writeBytes(Fixtures.memoryFile("sst2").readBytes().copyOf(500)) }
            assertFailsWith<SpartanEdgeException> { eng.loadMemory(broken) }
            assertEquals("rte", eng.activeTask().first)
        }
    }
}
