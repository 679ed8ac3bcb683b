package org.spartanedge.sample

import android.app.Activity
import android.os.Bundle
import android.widget.ArrayAdapter
import android.widget.Button
import android.widget.EditText
import android.widget.ProgressBar
import android.widget.Spinner
import android.widget.TextView
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.MainScope
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import org.spartanedge.SpartanEdge
import org.spartanedge.SpartanEdgeException
import java.io.File

/**
 * One screen: the server's tasks, the backbone download with a progress bar, and classification of typed text with
 * the chosen task. NOT built here (no Android SDK in this repository's CI); it uses only the SDK's public API.
 */
class MainActivity : Activity() {
    private val scope: CoroutineScope = MainScope()
    private lateinit var edge: SpartanEdge

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        val tasks = findViewById<Spinner>(R.id.tasks)
        val progress = findViewById<ProgressBar>(R.id.progress)
        val text = findViewById<EditText>(R.id.text)
        val classify = findViewById<Button>(R.id.classify)
        val result = findViewById<TextView>(R.id.result)
        edge = SpartanEdge(File(filesDir, "spartan-edge"), BuildConfig.SERVER_URL)

        scope.launch {
            try {
                val names = withContext(Dispatchers.IO) { edge.tasks().map { it.name } }
                tasks.adapter = ArrayAdapter(this@MainActivity, android.R.layout.simple_spinner_dropdown_item, names)
                withContext(Dispatchers.IO) {
                    edge.ensureBackbone { done, total ->
                        runOnUiThread { progress.progress = (1000 * done / maxOf(total, 1)).toInt() }
                    }
                }
                classify.isEnabled = names.isNotEmpty()
            } catch (e: SpartanEdgeException) {
                result.text = "error (${e.code}): ${e.message}"
            }
        }

        classify.setOnClickListener {
            val task = tasks.selectedItem as? String ?: return@setOnClickListener
            val input = text.text.toString()
            scope.launch {
                result.text = try {
                    val c = withContext(Dispatchers.IO) { edge.classify(task, input) }
                    val probs = c.probabilities.entries.joinToString { "${it.key} %.3f".format(it.value) }
                    val head = c.label?.let { "$it  ($probs)" } ?: "value %.4f".format(c.value)
                    val warn = if (c.warnings.isEmpty()) "" else "\n" + c.warnings.joinToString("\n")
                    "$task v${c.memoryVersion}: $head\n%.1f ms, %,d bytes fetched$warn".format(c.latencyMs, c.bytesFetched)
                } catch (e: SpartanEdgeException) {
                    "error (${e.code}): ${e.message}"
                }
            }
        }
    }

    override fun onDestroy() {
        scope.cancel()
        edge.close()
        super.onDestroy()
    }
}
