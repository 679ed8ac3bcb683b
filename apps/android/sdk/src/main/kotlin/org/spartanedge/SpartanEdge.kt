package org.spartanedge

import java.io.File
import java.net.MalformedURLException
import java.net.URL

/** Settings of a [SpartanEdge]; the defaults fit a phone. */
data class Options(
    /** The backbone bundle to use: "android" (ExecuTorch). */
    val target: String = "android",
    /** Use the cache only; never touch the network. Needs one earlier online run. */
    val offline: Boolean = false,
    val connectTimeoutMs: Int = 15_000,
    val readTimeoutMs: Int = 30_000,
    /** Tries per download before a short file raises [TruncatedException] (it resumes on the next call). */
    val attempts: Int = 4,
)

/** A task the server offers (online) or the cache holds (offline). */
data class TaskInfo(
    val name: String,
    val version: Int,
    val labelNames: List<String>,
    val isRegression: Boolean,
    /** A verified memory of this version is in the cache: [SpartanEdge.classify] needs no network for it. */
    val cached: Boolean,
)

/** One prediction. [probabilities] is in label order; a regression task has [value] and no label. */
data class Classification(
    val task: String,
    val label: String?,
    val probabilities: Map<String, Float>,
    val logits: List<Float>,
    val value: Float?,
    val memoryVersion: Int,
    /** Bytes downloaded by this call: backbone + memory on a first run, the memory alone for a new task, else 0. */
    val bytesFetched: Long,
    val latencyMs: Double,
    /** Refused downloads that left the last good copy in use (the call still succeeded). */
    val warnings: List<String>,
)

/**
 * The SPARTAN Edge client for Android (and any JVM): what apps/client does, with the same cache and rules.
 *
 * The backbone bundle (program + tokenizer, ~90 MB) is downloaded once; switching tasks downloads only that task's
 * memory (~1 MB) and swaps it into the loaded engine. Every file is checked against the manifest's sha256 before it
 * enters the cache and again before use. A refused download never replaces the last good copy, which stays in use
 * (reported in [Classification.warnings]) until a good one arrives.
 *
 * Every call blocks (network, disk, inference): call it off the main thread. Calls are serialised.
 *
 * [engines] = null makes a download-only client (e.g. a background prefetch job): it checks memory headers but not
 * their tensors, and [classify] throws [EngineException].
 */
class SpartanEdge @JvmOverloads constructor(
    cacheDir: File,
    serverUrl: String?,
    val options: Options = Options(),
    private val engines: EngineFactory? = NativeEngine.Factory,
) : AutoCloseable {
    private val server: String = (serverUrl ?: "").trimEnd('/')
    private val cache = Cache(cacheDir)
    private val downloader = Downloader(cache, options.connectTimeoutMs, options.readTimeoutMs, options.attempts)
    private val state: CacheState = cache.loadState()
    private var catalog: Catalog? = null
    private var engine: Engine? = null
    private var engineFingerprint: String? = null
    private var activeMemory: String? = null
    private val notes = mutableListOf<String>()

    /** How many times a backbone program was loaded (once per backbone, however many tasks are used). */
    var programLoads: Int = 0
        private set

    init {
        Names.target(options.target, "options")
        if (!options.offline) {
            if (server.isEmpty()) throw IllegalArgumentException("serverUrl is required unless options.offline")
            val u = try {
                URL(server)
            } catch (e: MalformedURLException) {
                throw IllegalArgumentException("bad serverUrl '$serverUrl': ${e.message}")
            }
            require(u.protocol == "http" || u.protocol == "https") { "serverUrl must be http(s), not ${u.protocol}" }
        }
    }

    // ---- catalog ----------------------------------------------------------------------------------------------

    /** Forget the catalog read by this instance, so the next call asks the server again (ETag: cheap). */
    @Synchronized
    fun refresh() {
        catalog = null
    }

    @Synchronized
    fun tasks(): List<TaskInfo> {
        if (options.offline) {
            val fp = state.backbone?.fingerprint ?: return emptyList()
            return state.memories.values.filter { it.backboneFingerprint == fp && cache.has(it.sha256) }
                .map { TaskInfo(it.task, it.version, it.labelNames, it.isRegression, cached = true) }
        }
        return catalog().tasks.values.map {
            TaskInfo(it.task, it.version, it.labelNames, it.isRegression, cache.has(it.file.sha256))
        }
    }

    private fun catalog(): Catalog {
        catalog?.let { return it }
        if (options.offline) throw NotCachedException("offline: no catalog")
        val known = state.catalog?.let { state.catalogEtag }  // revalidate only a catalog we still hold
        val (status, body, etag) = downloader.getText(url("/manifest"), known)
        val c = if (status == 304) Catalog.parse(state.catalog!!, options.target) else Catalog.parse(body, options.target)
        if (status == 200) {
            state.catalog = c.json
            state.catalogEtag = etag
            cache.saveState(state)
        }
        catalog = c
        return c
    }

    // ---- backbone ---------------------------------------------------------------------------------------------

    /** Makes sure a verified backbone bundle is cached; returns the bytes downloaded (0 when it was cached). */
    @Synchronized
    @JvmOverloads
    fun ensureBackbone(onProgress: ProgressListener? = null): Long {
        if (options.offline) {
            if (state.backbone == null) {
                throw NotCachedException("no backbone for ${options.target} in the cache; run once online first")
            }
            return 0
        }
        val bb = catalog().backbone ?: throw NotFoundException("the server has no backbone for ${options.target}")
        val cur = state.backbone
        if (cur != null && cur.fingerprint == bb.fingerprint && cur.version == bb.version &&
            cur.files.all { cache.has(it.sha256) }) {
            onProgress?.onProgress(1, 1)
            return 0
        }
        val total = bb.files.sumOf { it.bytes }
        var done = 0L
        var fetched = 0L
        try {
            for (f in bb.files) {
                fetched += downloader.fetch(url(f.url), f.sha256, f.bytes, onProgress, done, total).bytesFetched
                done += f.bytes
                onProgress?.onProgress(done, total)
            }
        } catch (e: SpartanEdgeException) {
            if (cur == null) throw e
            note("${e.message}; keeping the cached backbone ${cur.fingerprint.take(16)}… (version ${cur.version})")
            return fetched
        }
        state.backbone = bb
        cache.saveState(state)
        return fetched
    }

    private fun backbone(): Backbone = state.backbone
        ?: throw NotCachedException("no backbone for ${options.target} in the cache; run once online first")

    // ---- memories ---------------------------------------------------------------------------------------------

    /** Makes sure a verified memory for [task] (and the backbone) is cached; returns the bytes downloaded. */
    @Synchronized
    fun ensureTask(task: String): Long {
        Names.task(task, "task")
        notes.clear()
        val n = ensureBackbone()
        return n + ensureMemory(task).second
    }

    private fun ensureMemory(task: String): Pair<CachedMemory, Long> {
        val bb = backbone()
        val last = state.memories[task]?.takeIf { it.backboneFingerprint == bb.fingerprint }
        if (options.offline) {
            return (last ?: throw NotCachedException("no memory for task '$task' in the cache; run once online " +
                "first")) to 0L
        }
        val entry = catalog().tasks[task]
        val fresh: CachedMemory
        val fetched: Long
        try {
            if (entry == null) throw NotFoundException("the server has no task '$task' for ${options.target}")
            if (last != null && last.sha256 == entry.file.sha256 && cache.has(last.sha256)) return last to 0L
            if (entry.backboneFingerprint != bb.fingerprint) {
                throw MismatchException("the server's memory for '$task' (version ${entry.version}) is for backbone " +
                    "${entry.backboneFingerprint.take(16)}…, the cached backbone is ${bb.fingerprint.take(16)}…; " +
                    "refused", "fingerprint_mismatch")
            }
            val sep = if ('?' in entry.file.url) '&' else '?'
            val got = downloader.fetch(url("${entry.file.url}${sep}backbone=${bb.fingerprint}"), entry.file.sha256,
                entry.file.bytes)
            val header = try {
                MemoryHeader.read(got.file).also {
                    it.requireFor(task, bb.fingerprint)
                    engines?.validateMemory(got.file, bb.json.toString())
                }
            } catch (e: SpartanEdgeException) {
                got.file.delete()  // verified bytes, but not a memory this backbone can use: never the last good copy
                throw e
            }
            fresh = CachedMemory(task, entry.version, entry.file.sha256, bb.fingerprint, header.labelNames,
                header.isRegression, header.numOutputs)
            fetched = got.bytesFetched
        } catch (e: SpartanEdgeException) {
            if (last == null) throw e
            note("${e.message}; using the last good memory for '$task' (version ${last.version})")
            return last to 0L
        }
        state.memories[task] = fresh
        cache.saveState(state)
        return fresh to fetched
    }

    // ---- inference --------------------------------------------------------------------------------------------

    @Synchronized
    @JvmOverloads
    fun classify(task: String, text: String, pair: String? = null): Classification {
        Names.task(task, "task")
        notes.clear()
        var fetched = ensureBackbone()
        val (mem, n) = ensureMemory(task)
        fetched += n
        if (!cache.verified(mem.sha256)) {
            throw IntegrityException("cached memory for '$task' is missing or corrupt; run online to re-fetch")
        }
        val eng = loadEngine()
        if (activeMemory != mem.sha256) {
            eng.loadMemory(cache.blob(mem.sha256))  // only the memory changes; the program stays loaded
            activeMemory = mem.sha256
        }
        val t0 = System.nanoTime()
        val out = eng.classify(text, pair)
        val ms = (System.nanoTime() - t0) / 1e6
        if (out.logits.size != mem.numOutputs) {
            throw EngineException("the engine returned ${out.logits.size} outputs, the memory has ${mem.numOutputs}")
        }
        val logits = out.logits.toList()
        if (mem.isRegression) {
            return Classification(task, null, emptyMap(), logits, logits[0], mem.version, fetched, ms, notes.toList())
        }
        val probs = LinkedHashMap<String, Float>()
        mem.labelNames.forEachIndexed { i, name -> probs[name] = out.probabilities[i] }
        val best = mem.labelNames[out.probabilities.indices.maxByOrNull { out.probabilities[it] } ?: 0]
        return Classification(task, best, probs, logits, null, mem.version, fetched, ms, notes.toList())
    }

    /** The backbone program, loaded once per backbone fingerprint (tasks reuse it). */
    private fun loadEngine(): Engine {
        val bb = backbone()
        engine?.let { if (engineFingerprint == bb.fingerprint) return it }
        val factory = engines ?: throw EngineException("this SpartanEdge was made without an engine", "argument")
        for (f in listOf(bb.program, bb.tokenizer)) {
            if (!cache.verified(f.sha256)) {
                throw IntegrityException("cached backbone file ${f.path} is missing or corrupt; run online to re-fetch")
            }
        }
        close()
        val e = factory.open(bb.json.toString(), cache.blob(bb.program.sha256), cache.blob(bb.tokenizer.sha256))
        engine = e
        engineFingerprint = bb.fingerprint
        programLoads++
        return e
    }

    /** Releases the engine (the cache stays). The instance can be used again; the program reloads on demand. */
    @Synchronized
    override fun close() {
        engine?.close()
        engine = null
        engineFingerprint = null
        activeMemory = null
    }

    private fun note(msg: String) {
        notes.add(msg)
    }

    /** A URL on [server]: [path] passed Names.serverPath when its manifest was read (or is a constant here). */
    private fun url(path: String): URL = URL(server + Names.serverPath(path, "request"))
}
