package org.spartanedge

// Android-only conveniences, compiled by Gradle only (sdk/build.gradle.kts adds src/android/kotlin). NOT built
// here: build.sh compiles src/main for the JVM, which has no android.* classes. Kept thin on purpose: everything
// they do goes through the public API that the JVM tests cover.

import android.content.Context
import androidx.work.Constraints
import androidx.work.CoroutineWorker
import androidx.work.Data
import androidx.work.NetworkType
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.WorkManager
import androidx.work.WorkerParameters
import androidx.work.workDataOf
import java.io.File

/** The default cache folder of an app: <filesDir>/spartan-edge (private, not cleared like cacheDir). */
fun spartanEdgeCacheDir(context: Context): File = File(context.filesDir, "spartan-edge")

/** A client with the app's default cache folder. */
@JvmOverloads
fun SpartanEdge(context: Context, serverUrl: String?, options: Options = Options()): SpartanEdge =
    SpartanEdge(spartanEdgeCacheDir(context), serverUrl, options)

/**
 * Downloads the backbone and the given tasks' memories in the background (WorkManager: survives the app's process,
 * waits for an unmetered network). Download-only (no engine): headers are checked now, tensors when first used.
 */
class PrefetchWorker(context: Context, params: WorkerParameters) : CoroutineWorker(context, params) {
    override suspend fun doWork(): Result {
        val server = inputData.getString(KEY_SERVER) ?: return Result.failure()
        val tasks = inputData.getStringArray(KEY_TASKS)?.toList() ?: emptyList()
        return try {
            val edge = SpartanEdge(spartanEdgeCacheDir(applicationContext), server, engines = null)
            edge.ensureBackbone { done, total -> setProgressAsync(workDataOf("done" to done, "total" to total)) }
            tasks.forEach { edge.ensureTask(it) }
            Result.success()
        } catch (e: NetworkException) {
            Result.retry()
        } catch (e: TruncatedException) {
            Result.retry()  // the partial file is kept: the retry resumes it
        } catch (e: SpartanEdgeException) {
            Result.failure(Data.Builder().putString("error", "${e.code}: ${e.message}").build())
        }
    }

    companion object {
        const val KEY_SERVER = "server"
        const val KEY_TASKS = "tasks"

        fun enqueue(context: Context, serverUrl: String, tasks: List<String>) {
            val request = OneTimeWorkRequestBuilder<PrefetchWorker>()
                .setInputData(workDataOf(KEY_SERVER to serverUrl, KEY_TASKS to tasks.toTypedArray()))
                .setConstraints(Constraints.Builder().setRequiredNetworkType(NetworkType.UNMETERED).build())
                .build()
            WorkManager.getInstance(context).enqueue(request)
        }
    }
}
