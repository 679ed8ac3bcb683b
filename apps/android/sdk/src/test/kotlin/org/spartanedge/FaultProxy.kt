package org.spartanedge

import java.io.ByteArrayOutputStream
import java.io.InputStream
import java.net.InetAddress
import java.net.ServerSocket
import java.net.Socket
import java.util.Collections
import kotlin.concurrent.thread

/**
 * A real TCP proxy in front of the test server that breaks responses the way networks and attackers do. One request
 * per connection (it asks both sides for `Connection: close`). For each request, [fault] (given the request line)
 * returns what to do with the response body: pass it, cut the connection after n body bytes, or flip one byte.
 */
class FaultProxy(private val upstreamPort: Int, private val fault: (String) -> Fault) : AutoCloseable {
    sealed class Fault {
        object Pass : Fault()
        data class CutAfter(val bytes: Int) : Fault()
        data class FlipByte(val offset: Int) : Fault()
    }

    private val socket = ServerSocket(0, 16, InetAddress.getLoopbackAddress())
    val url = "http://127.0.0.1:${socket.localPort}"
    /** Request line + Range header of every request seen, in order. */
    val requests: MutableList<String> = Collections.synchronizedList(mutableListOf())

    init {
        thread(isDaemon = true) {
            while (!socket.isClosed) {
                val client = try { socket.accept() } catch (e: Exception) { break }
                thread(isDaemon = true) { client.use { handle(it) } }
            }
        }
    }

    private fun readHead(input: InputStream): ByteArray {
        val buf = ByteArrayOutputStream()
        while (true) {
            val b = input.read()
            if (b < 0) break
            buf.write(b)
            val a = buf.toByteArray()
            if (a.size >= 4 && a[a.size - 4] == '\r'.code.toByte() && a[a.size - 3] == '\n'.code.toByte() &&
                a[a.size - 2] == '\r'.code.toByte() && a[a.size - 1] == '\n'.code.toByte()) break
        }
        return buf.toByteArray()
    }

    private fun handle(client: Socket) {
        val head = readHead(client.getInputStream()).decodeToString()
        val lines = head.split("\r\n").filter { it.isNotEmpty() }
        if (lines.isEmpty()) return
        val range = lines.firstOrNull { it.startsWith("Range:", ignoreCase = true) }
        requests.add(lines[0] + (range?.let { " | $it" } ?: ""))
        val forwarded = lines.filterNot { it.startsWith("Connection:", ignoreCase = true) } + "Connection: close"
        val response = Socket(InetAddress.getLoopbackAddress(), upstreamPort).use { up ->
            up.getOutputStream().write((forwarded.joinToString("\r\n") + "\r\n\r\n").toByteArray())
            up.getInputStream().readBytes()  // upstream closes after one response
        }
        var end = -1
        for (i in 0 until response.size - 3) {
            if (response[i] == '\r'.code.toByte() && response[i + 1] == '\n'.code.toByte() &&
                response[i + 2] == '\r'.code.toByte() && response[i + 3] == '\n'.code.toByte()) { end = i + 4; break }
        }
        val out = client.getOutputStream()
        when (val f = fault(lines[0])) {
            is Fault.Pass -> out.write(response)
            is Fault.CutAfter -> out.write(response, 0, minOf(response.size, end + f.bytes))
            is Fault.FlipByte -> {
                val copy = response.copyOf()
                if (end + f.offset < copy.size) copy[end + f.offset] = (copy[end + f.offset].toInt() xor 0x5a).toByte()
                out.write(copy)
            }
        }
        out.flush()
    }

    override fun close() = socket.close()
}
