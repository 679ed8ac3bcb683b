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
    private var catalogError: SpartanEdgeException? = null
    private val verified = mutableSetOf<String>()  // sha256s re-hashed by this instance
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
        catalogError = null
    }

    /**
     * The server's tasks (online), or the cached ones (offline). Online with no usable catalog (server down, an
     * answer that is not a valid catalog) it throws that problem: the app decides whether to show cached tasks.
     */
    @Synchronized
    fun tasks(): List<TaskInfo> {
        val cat = catalog()
        if (cat == null) {
            if (!options.offline) throw catalogError!!
            val fp = state.backbone?.fingerprint ?: return emptyList()
            return state.memories.values.filter { it.backboneFingerprint == fp && cache.has(it.sha256) }
                .map { TaskInfo(it.task, it.version, it.labelNames, it.isRegression, cached = true) }
        }
        return cat.tasks.values.map {
            TaskInfo(it.task, it.version, it.labelNames, it.isRegression, cache.has(it.file.sha256))
        }
    }

    /**
     * The server's catalog, or null when it cannot be had (offline, unreachable, HTTP error, not a valid catalog):
     * the client then runs from its verified cache with a warning, as apps/client does; [catalogError] says why.
     */
    private fun catalog(): Catalog? {
        catalog?.let { return it }
        if (catalogError != null) return null
        if (options.offline) {
            catalogError = NotCachedException("offline")
            return null
        }
        val known = state.catalog?.let { state.catalogEtag }  // revalidate only a catalog we still hold
        try {
            val (status, body, etag) = downloader.getText(url("/manifest"), known)
            val c = if (status == 304) Catalog.parse(state.catalog!!, options.target)
            else Catalog.parse(body, options.target)
            if (status == 200) {
                state.catalog = c.json
                state.catalogEtag = etag
                cache.saveState(state)
            }
            catalog = c
            return c
        } catch (e: FormatException) {
            catalogError = FormatException("$server/manifest is not a valid catalog (${e.message})", e.code)
        } catch (e: NetworkException) {
            catalogError = e
        }
        return null
    }

    private fun problem(): String = catalogError?.message ?: "no catalog"

    // ---- files ------------------------------------------------------------------------------------------------

    /**
     * A verified copy of one file in the cache: the cached one is re-hashed (once per instance); only a missing or
     * corrupt file is fetched, and only that file. [url] = null: no server to fetch from now. Returns bytes fetched.
     */
    private fun ensureFile(sha256: String, size: Long, url: String?, progress: ProgressListener? = null,
                           base: Long = 0, total: Long = size): Long {
        if (sha256 in verified || cache.verified(sha256)) {
            verified.add(sha256)
            return 0
        }
        url ?: throw IntegrityException("cached file ${sha256.take(16)}… is missing or corrupt and there is no " +
            "server to re-fetch it from (${problem()})")
        val n = downloader.fetch(url(url), sha256, size, progress, base, total).bytesFetched
        verified.add(sha256)
        return n
    }

    // ---- backbone ---------------------------------------------------------------------------------------------

    /** Makes sure a verified backbone bundle is cached; returns the bytes downloaded (0 when it was cached). */
    @Synchronized
    @JvmOverloads
    fun ensureBackbone(onProgress: ProgressListener? = null): Long {
        val cur = state.backbone?.takeIf { it.target == options.target }
        val cat = catalog()
        if (cat == null) {
            if (cur == null) {
                if (options.offline) {
                    throw NotCachedException("no backbone for ${options.target} in the cache; run once online first")
                }
                throw catalogError!!
            }
            if (!options.offline) {
                note("${problem()}; using the cached backbone ${cur.fingerprint.take(16)}… (version ${cur.version}) " +
                    "and cached memories")
            }
            for (f in cur.files) ensureFile(f.sha256, f.bytes, null)  // corrupt and unfetchable: say so, don't run
            onProgress?.onProgress(1, 1)
            return 0
        }
        val bb = cat.backbone ?: throw NotFoundException("the server has no backbone for ${options.target}")
        val total = bb.files.sumOf { it.bytes }
        var done = 0L
        var fetched = 0L
        try {
            for (f in bb.files) {
                fetched += ensureFile(f.sha256, f.bytes, f.url, onProgress, done, total)
                done += f.bytes
                onProgress?.onProgress(done, total)
            }
        } catch (e: SpartanEdgeException) {
            if (cur == null) throw e
            note("${e.message}; keeping the cached backbone ${cur.fingerprint.take(16)}… (version ${cur.version})")
            return fetched
        }
        if (cur == null || cur.json.toString() != bb.json.toString()) {
            state.backbone = bb
            cache.saveState(state)
        }
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

    /** Refused downloads and fallbacks of the last call (also in [Classification.warnings]). */
    @Synchronized
    fun warnings(): List<String> = notes.toList()

    private fun ensureMemory(task: String): Pair<CachedMemory, Long> {
        val bb = backbone()
        val last = state.memories[task]?.takeIf { it.backboneFingerprint == bb.fingerprint }
        val cat = catalog()
        if (cat == null) {
            if (last == null) {
                val cached = state.memories.keys.joinToString().ifEmpty { "none" }
                if (options.offline) {
                    throw NotCachedException("no memory for task '$task' in the cache (cached: $cached); run once " +
                        "online first")
                }
                throw catalogError!!
            }
            ensureFile(last.sha256, 0, null)
            return last to 0L
        }
        val entry = cat.tasks[task]
        val fresh: CachedMemory
        val fetched: Long
        try {
            if (entry == null) {
                val have = cat.tasks.keys.sorted().joinToString().ifEmpty { "no tasks yet (publish an export first)" }
                throw NotFoundException("the server has no task '$task' for ${options.target}; it has: $have")
            }
            if (entry.backboneFingerprint != bb.fingerprint) {
                throw MismatchException("the server's memory for '$task' (version ${entry.version}) is for backbone " +
                    "${entry.backboneFingerprint.take(16)}…, the cached backbone is ${bb.fingerprint.take(16)}…; " +
                    "refused", "fingerprint_mismatch")
            }
            if (last != null && last.sha256 == entry.file.sha256) {
                return last to ensureFile(last.sha256, entry.file.bytes, entry.file.url)  // re-fetched alone if it rotted
            }
            val sep = if ('?' in entry.file.url) '&' else '?'
            fetched = ensureFile(entry.file.sha256, entry.file.bytes, "${entry.file.url}${sep}backbone=${bb.fingerprint}")
            val file = cache.blob(entry.file.sha256)
            val header = try {
                MemoryHeader.read(file).also {
                    it.requireFor(task, bb.fingerprint)
                    engines?.validateMemory(file, bb.json.toString())
                }
            } catch (e: SpartanEdgeException) {
                file.delete()  // verified bytes, but not a memory this backbone can use: never the last good copy
                verified.remove(entry.file.sha256)
                throw e
            }
            fresh = CachedMemory(task, entry.version, entry.file.sha256, bb.fingerprint, header.labelNames,
                header.isRegression, header.numOutputs)
        } catch (e: SpartanEdgeException) {
            if (last == null) throw e
            note("${e.message}; using the last good memory for '$task' (version ${last.version})")
            ensureFile(last.sha256, 0, null)
            return last to 0L
        }
        if (last != fresh) {
            state.memories[task] = fresh
            cache.saveState(state)
        }
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
        for (f in listOfNotNull(bb.program, bb.tokenizer, bb.defaults)) {
            ensureFile(f.sha256, f.bytes, f.url.takeIf { catalog != null })
        }
        close()
        val e = factory.open(bb.json.toString(), cache.blob(bb.program.sha256), cache.blob(bb.tokenizer.sha256),
                             bb.defaults?.let { cache.blob(it.sha256) })
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
