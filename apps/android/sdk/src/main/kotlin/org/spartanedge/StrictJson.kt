package org.spartanedge

/**
 * A strict RFC 8259 check run before org.json builds the tree. Written by hand because org.json (Android's and
 * Debian's alike) is lenient and has no strict mode: it accepts comments, single quotes, unquoted keys and values,
 * trailing commas and `=>`, and silently keeps the last of two equal keys, which docs/formats.md forbids (two readers
 * could pick different values). Returns null for a strict document, else what is wrong and where.
 */
internal object StrictJson {
    private const val MAX_DEPTH = 512

    fun problem(text: String): String? = try {
        val p = Parser(text)
        p.value(0)
        p.ws()
        if (p.i != text.length) p.fail("text after the value")
        null
    } catch (e: Bad) {
        e.message
    }

    private class Bad(message: String) : Exception(message)

    private class Parser(val s: String) {
        var i = 0

        fun fail(what: String): Nothing = throw Bad("$what at character $i")

        fun ws() {
            while (i < s.length && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++
        }

        fun value(depth: Int) {
            if (depth > MAX_DEPTH) fail("nesting deeper than $MAX_DEPTH")
            ws()
            if (i >= s.length) fail("missing value")
            when (s[i]) {
                '{' -> obj(depth)
                '[' -> arr(depth)
                '"' -> str()
                't' -> lit("true")
                'f' -> lit("false")
                'n' -> lit("null")
                else -> num()
            }
        }

        private fun obj(depth: Int) {
            i++
            val keys = HashSet<String>()
            ws()
            if (i < s.length && s[i] == '}') { i++; return }
            while (true) {
                ws()
                if (i >= s.length || s[i] != '"') fail("expected a quoted key")
                val key = str()
                if (!keys.add(key)) fail("the key \"${key.take(40)}\" appears twice")
                ws()
                if (i >= s.length || s[i] != ':') fail("expected ':'")
                i++
                value(depth + 1)
                ws()
                if (i < s.length && s[i] == ',') { i++; continue }
                if (i < s.length && s[i] == '}') { i++; return }
                fail("expected ',' or '}'")
            }
        }

        private fun arr(depth: Int) {
            i++
            ws()
            if (i < s.length && s[i] == ']') { i++; return }
            while (true) {
                value(depth + 1)
                ws()
                if (i < s.length && s[i] == ',') { i++; continue }
                if (i < s.length && s[i] == ']') { i++; return }
                fail("expected ',' or ']'")
            }
        }

        /** A string; returns its decoded value (keys are compared decoded: "a" and "\u0061" are the same key). */
        private fun str(): String {
            i++
            val out = StringBuilder()
            while (true) {
                if (i >= s.length) fail("unterminated string")
                val c = s[i++]
                when {
                    c == '"' -> return out.toString()
                    c == '\\' -> {
                        if (i >= s.length) fail("unterminated escape")
                        when (val e = s[i++]) {
                            '"', '\\', '/' -> out.append(e)
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000c')
                            'n' -> out.append('\n')
                            'r' -> out.append('\r')
                            't' -> out.append('\t')
                            'u' -> {
                                if (i + 4 > s.length) fail("short \\u escape")
                                out.append(s.substring(i, i + 4).toIntOrNull(16)?.toChar() ?: fail("bad \\u escape"))
                                i += 4
                            }
                            else -> fail("bad escape \\$e")
                        }
                    }
                    c < ' ' -> fail("control character in a string")
                    else -> out.append(c)
                }
            }
        }

        private fun lit(word: String) {
            if (!s.startsWith(word, i)) fail("unexpected text")
            i += word.length
        }

        private fun num() {
            val start = i
            if (i < s.length && s[i] == '-') i++
            if (i < s.length && s[i] == '0') {
                i++
            } else if (i < s.length && s[i] in '1'..'9') {
                while (i < s.length && s[i].isAsciiDigit()) i++
            } else {
                fail("unexpected text")
            }
            if (i < s.length && s[i] == '.') {
                i++
                if (i >= s.length || !s[i].isAsciiDigit()) fail("digits expected after '.'")
                while (i < s.length && s[i].isAsciiDigit()) i++
            }
            if (i < s.length && (s[i] == 'e' || s[i] == 'E')) {
                i++
                if (i < s.length && (s[i] == '+' || s[i] == '-')) i++
                if (i >= s.length || !s[i].isAsciiDigit()) fail("digits expected in the exponent")
                while (i < s.length && s[i].isAsciiDigit()) i++
            }
            if (i == start) fail("unexpected text")
        }

        private fun Char.isAsciiDigit() = this in '0'..'9'
    }
}
