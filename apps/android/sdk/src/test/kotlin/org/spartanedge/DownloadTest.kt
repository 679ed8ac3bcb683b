package org.spartanedge

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import kotlin.test.assertFailsWith
import org.junit.jupiter.api.io.TempDir
import java.io.File
import java.net.URL

/** Downloads against the real server, directly and through a proxy that cuts or corrupts responses. */
class DownloadTest {
    private fun sst2(): TaskMemory =
        Catalog.parse(URL("${Fixtures.server}/manifest").readText(), "android").tasks.getValue("sst2")

    @Test
    fun aPartialFileOnDiskIsResumedWithRange(@TempDir dir: File) {
        val entry = sst2()
        val cache = Cache(dir)
        val have = entry.file.bytes / 2
        cache.partialFile(entry.file.sha256).writeBytes(Fixtures.memoryFile("sst2").readBytes().copyOf(have.toInt()))
        FaultProxy(Fixtures.port) { FaultProxy.Fault.Pass }.use { proxy ->
            val got = Downloader(cache).fetch(URL(proxy.url + entry.file.url), entry.file.sha256, entry.file.bytes)
            assertEquals(entry.file.bytes - have, got.bytesFetched)  // only the missing tail crossed the network
            assertEquals(entry.file.sha256, Cache.sha256Of(got.file))
            assertTrue(proxy.requests.single().endsWith("Range: bytes=$have-"), proxy.requests.toString())
        }
        assertFalse(cache.partialFile(entry.file.sha256).exists())
    }

    @Test
    fun aConnectionCutMidBodyResumesWhereItStopped(@TempDir dir: File) {
        val progress = mutableListOf<Long>()
        var cuts = 2
        FaultProxy(Fixtures.port) { line ->
            if ("backbone.pte" in line && cuts-- > 0) FaultProxy.Fault.CutAfter(200_000) else FaultProxy.Fault.Pass
        }.use { proxy ->
            val edge = SpartanEdge(dir, proxy.url, engines = null)
            val n = edge.ensureBackbone { done, _ -> progress.add(done) }
            assertEquals(Fixtures.backboneBytes, n)  // every byte fetched once: what arrived before a cut was kept
            val pte = proxy.requests.filter { "backbone.pte" in it }
            assertEquals(3, pte.size, pte.toString())
            assertTrue(pte[1].endsWith("Range: bytes=200000-") && pte[2].endsWith("Range: bytes=400000-"), "$pte")
        }
        assertEquals(progress.sorted(), progress)  // progress only moves forward
        assertEquals(Fixtures.backboneBytes, progress.last())
    }

    @Test
    fun aDownloadThatStaysShortKeepsItsPartialFile(@TempDir dir: File) {
        val entry = sst2()
        FaultProxy(Fixtures.port) { FaultProxy.Fault.CutAfter(1000) }.use { proxy ->
            val cache = Cache(dir)
            val e = assertFailsWith<TruncatedException> {
                Downloader(cache, attempts = 2).fetch(URL(proxy.url + entry.file.url), entry.file.sha256,
                    entry.file.bytes)
            }
            assertTrue("2000 of ${entry.file.bytes}" in e.message!!, e.message)
            assertEquals(2000, cache.partialFile(entry.file.sha256).length())
            assertFalse(cache.has(entry.file.sha256))
            // The next run resumes from the kept bytes.
            val got = Downloader(cache).fetch(URL(Fixtures.server + entry.file.url), entry.file.sha256,
                entry.file.bytes)
            assertEquals(entry.file.bytes - 2000, got.bytesFetched)
        }
    }

    @Test
    fun corruptedBytesNeverEnterTheCache(@TempDir dir: File) {
        val entry = sst2()
        FaultProxy(Fixtures.port) { FaultProxy.Fault.FlipByte(5000) }.use { proxy ->
            val cache = Cache(dir)
            val e = assertFailsWith<IntegrityException> {
                Downloader(cache).fetch(URL(proxy.url + entry.file.url), entry.file.sha256, entry.file.bytes)
            }
            assertTrue("does not match the manifest's sha256" in e.message!!, e.message)
            assertFalse(cache.has(entry.file.sha256) || cache.partialFile(entry.file.sha256).exists())
        }
    }

    @Test
    fun httpErrorsCarryTheServersMessage(@TempDir dir: File) {
        val server = Fixtures.server
        val e = assertFailsWith<NetworkException> {
            Downloader(Cache(dir)).fetch(URL("$server/memories/nosuchtask?target=android"), "0".repeat(64), 10)
        }
        assertEquals(404, e.httpStatus)
        assertTrue("unknown task 'nosuchtask'" in e.message!!, e.message)
        val down = assertFailsWith<NetworkException> { SpartanEdge(dir, "http://127.0.0.1:1", engines = null).tasks() }
        assertTrue("cannot reach" in down.message!!, down.message)
    }
}
