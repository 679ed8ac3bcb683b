package org.spartanedge

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir
import java.io.File
import kotlin.test.assertFailsWith

/**
 * A recipe bundle (dist manifest v2, docs/formats.md): a plain task's memory leaves the LayerNorm and MLP-head inputs
 * to the bundle's defaults.safetensors, a recipe task's memory holds its own; both run on the one recipe program.
 */
class RecipeBundleTest {
    private val recipe get() = Fixtures.require().getJSONObject("recipe")

    @Test
    fun plainAndRecipeTasksRunOnTheOneProgramLikeTheReferenceClient(@TempDir dir: File) {
        Fixtures.requireEngine()
        val expected = recipe.getJSONArray("expected")
        SpartanEdge(dir, recipe.getString("server")).use { edge ->
            for (i in 0 until expected.length()) {
                val want = expected.getJSONObject(i)
                val got = edge.classify(want.getString("task"), want.getString("text"))
                assertEquals(want.getString("label"), got.label, want.toString())
                Fixtures.assertLogits(want.getJSONArray("logits"), got.logits, want.toString())
            }
            assertEquals(1, edge.programLoads)
        }
        // The defaults file is part of the backbone bundle: downloaded, verified and cached with the program.
        val defaults = Cache(dir).loadState().backbone!!.defaults
        assertTrue(defaults != null && File(dir, "blobs/${defaults.sha256}").isFile)
    }

    @Test
    fun withoutTheDefaultsFileAPlainMemoryIsRefused(@TempDir dir: File) {
        Fixtures.requireEngine()
        SpartanEdge(dir, recipe.getString("server"), engines = null).ensureTask("plain")
        val bb = Cache(dir).loadState().backbone!!
        NativeEngine.open(bb.json.toString(), File(dir, "blobs/${bb.program.sha256}"),
            File(dir, "blobs/${bb.tokenizer.sha256}")).use { eng ->
            val e = assertFailsWith<FormatException> {
                eng.loadMemory(File(recipe.getString("dist"), "android/memories/plain.safetensors"))
            }
            assertEquals("tensor_set", e.code, e.message)
            eng.loadMemory(File(recipe.getString("dist"), "android/memories/full.safetensors"))  // holds every input
        }
    }
}
