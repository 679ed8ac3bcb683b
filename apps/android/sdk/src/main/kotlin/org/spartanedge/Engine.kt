package org.spartanedge

import java.io.File

/** What the engine returns for one text: the active task's outputs (padding dropped) and the ids it fed. */
class EngineOutput(val logits: FloatArray, val probabilities: FloatArray, val inputIds: LongArray)

/**
 * Runs the shared backbone program with the active task memory. One engine holds one loaded backbone; switching
 * tasks is [loadMemory] (the program is not reloaded). Used by one thread at a time.
 */
interface Engine : AutoCloseable {
    /** Fully validates [memory] against this backbone and makes it active; on failure the old one stays active. */
    fun loadMemory(memory: File)

    /** Tokenizes [text] (+ [pair]) and runs the program with the active memory. */
    fun classify(text: String, pair: String? = null): EngineOutput
}

/** Opens engines, and validates memory files without one (before a download becomes the last good copy). */
interface EngineFactory {
    /**
     * [backboneJson]: the server's backbone description (GET /backbone/<target>, or the manifest's entry);
     * [defaults]: the recipe program's defaults file, which feeds the inputs a plain task's memory leaves out.
     */
    fun open(backboneJson: String, program: File, tokenizer: File, defaults: File? = null): Engine

    /** Throws a [SpartanEdgeException] unless [memory] is a valid memory file for this backbone. */
    fun validateMemory(memory: File, backboneJson: String?)
}
