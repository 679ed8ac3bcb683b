package org.spartanedge

import java.io.File

/**
 * [Engine] over the native runtime's C ABI (apps/native/include/spartan_edge.h) through JNI
 * (apps/android/jni/spartan_edge_jni.cpp, built as libspartan_edge_jni). One tokenizer and one memory reader for
 * every platform: the Kotlin side never re-implements them.
 *
 * The library is found as System.loadLibrary("spartan_edge_jni") (an APK's jniLibs, or java.library.path), or at
 * the path in the system property `spartanedge.jni` (the JVM tests).
 */
class NativeEngine private constructor(private var handle: Long) : Engine {
    override fun loadMemory(memory: File) = translate { nativeLoadMemory(live(), memory.path) }

    override fun classify(text: String, pair: String?): EngineOutput = translate {
        nativeClassify(live(), text, pair)
    }

    /** The active memory's task as the native runtime read it from the file: name, labels, regression flag. */
    fun activeTask(): Triple<String, List<String>, Boolean> = translate {
        val parts = nativeTask(live())
        Triple(parts[0], parts.drop(2), parts[1] == "regression")
    }

    override fun close() {
        if (handle != 0L) nativeFree(handle)
        handle = 0L
    }

    private fun live(): Long = if (handle != 0L) handle else throw EngineException("engine is closed", "argument")

    companion object Factory : EngineFactory {
        /** The native error codes (se_status) mapped to the SDK's exception types. */
        private const val SE_ARGUMENT = 1
        private const val SE_IO = 2
        private const val SE_FORMAT = 3
        private const val SE_MISMATCH = 4
        private const val SE_INTEGRITY = 5
        private const val SE_NOT_FOUND = 9

        private val loaded: Result<Unit> by lazy {
            runCatching {
                val path = System.getProperty("spartanedge.jni")
                if (path != null) System.load(File(path).absolutePath) else System.loadLibrary("spartan_edge_jni")
            }
        }

        /** True when the JNI library (and the native runtime it links) could be loaded. */
        val available: Boolean get() = loaded.isSuccess

        private fun ensureLoaded() {
            loaded.exceptionOrNull()?.let {
                throw EngineException("native library spartan_edge_jni is not loadable: ${it.message}", "runtime", it)
            }
        }

        override fun open(backboneJson: String, program: File, tokenizer: File, defaults: File?): Engine {
            ensureLoaded()
            return NativeEngine(translate { nativeOpen(backboneJson, program.path, tokenizer.path, defaults?.path) })
        }

        override fun validateMemory(memory: File, backboneJson: String?) {
            ensureLoaded()
            translate { nativeValidateMemory(memory.path, backboneJson) }
        }

        fun abiVersion(): Int {
            ensureLoaded()
            return nativeAbiVersion()
        }

        private inline fun <T> translate(block: () -> T): T = try {
            block()
        } catch (e: NativeStatusException) {
            throw when (e.status) {
                SE_IO -> StorageException(e.message ?: "", e)
                SE_FORMAT -> FormatException(e.message ?: "", e.code)
                SE_MISMATCH -> MismatchException(e.message ?: "", e.code)
                SE_INTEGRITY -> IntegrityException(e.message ?: "")
                SE_NOT_FOUND -> NotFoundException(e.message ?: "")
                SE_ARGUMENT -> EngineException(e.message ?: "", e.code)
                else -> EngineException(e.message ?: "", e.code)
            }
        }

        @JvmStatic private external fun nativeAbiVersion(): Int
        @JvmStatic private external fun nativeOpen(
            backboneJson: String,
            program: String,
            tokenizer: String,
            defaults: String?,
        ): Long
        @JvmStatic private external fun nativeFree(handle: Long)
        @JvmStatic private external fun nativeLoadMemory(handle: Long, memory: String)
        @JvmStatic private external fun nativeTask(handle: Long): Array<String>
        @JvmStatic private external fun nativeClassify(handle: Long, text: String, pair: String?): EngineOutput
        @JvmStatic private external fun nativeValidateMemory(memory: String, backboneJson: String?)
    }
}

/** Thrown by the JNI glue for a failed se_* call: [status] is the se_status, [code] se_last_error_code(). */
internal class NativeStatusException(val status: Int, val code: String, message: String) : Exception(message)
