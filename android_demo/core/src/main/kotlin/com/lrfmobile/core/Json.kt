package com.lrfmobile.core

/**
 * A small strict JSON reader (RFC 8259), because org.json exists only on Android and the core
 * must run on a plain JVM. Values: Map<String, Any?> (insertion-ordered), List<Any?>, String,
 * Boolean, null, and [JsonNumber] (the literal text, so 64-bit integers and float bits survive).
 */
class JsonNumber(val text: String) {
    fun toDouble(): Double = java.lang.Double.parseDouble(text)

    /** The exact integer value; throws if the literal has a fraction/exponent or overflows Long. */
    fun toLongExact(): Long {
        try {
            return java.lang.Long.parseLong(text)
        } catch (e: NumberFormatException) {
            throw IllegalArgumentException("expected an integer, got $text")
        }
    }

    override fun equals(other: Any?): Boolean = other is JsonNumber && other.text == text
    override fun hashCode(): Int = text.hashCode()
    override fun toString(): String = text
}

/** Thrown for malformed JSON; the message gives the character offset. */
class JsonException(message: String) : IllegalArgumentException(message)

object Json {
    /** Parses one JSON document (trailing whitespace allowed, nothing else). */
    fun parse(text: String): Any? {
        val p = Parser(text)
        p.skipWs()
        val value = p.value(0)
        p.skipWs()
        if (p.pos != text.length) p.fail("unexpected trailing text")
        return value
    }

    private class Parser(val s: String) {
        var pos = 0

        fun fail(why: String): Nothing = throw JsonException("invalid JSON at offset $pos: $why")

        fun skipWs() {
            while (pos < s.length && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t')) pos++
        }

        fun value(depth: Int): Any? {
            if (depth > 256) fail("nesting deeper than 256")
            if (pos >= s.length) fail("unexpected end of input")
            val c = s[pos]
            return when {
                c == '{' -> obj(depth)
                c == '[' -> arr(depth)
                c == '"' -> str()
                c == '-' || c in '0'..'9' -> num()
                s.startsWith("true", pos) -> { pos += 4; true }
                s.startsWith("false", pos) -> { pos += 5; false }
                s.startsWith("null", pos) -> { pos += 4; null }
                else -> fail("unexpected character '$c'")
            }
        }

        fun obj(depth: Int): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++ // {
            skipWs()
            if (pos < s.length && s[pos] == '}') { pos++; return out }
            while (true) {
                skipWs()
                if (pos >= s.length || s[pos] != '"') fail("expected a string key")
                val key = str()
                if (out.containsKey(key)) fail("duplicate key \"$key\"")
                skipWs()
                expect(':')
                skipWs()
                out[key] = value(depth + 1)
                skipWs()
                if (pos < s.length && s[pos] == ',') { pos++; continue }
                expect('}')
                return out
            }
        }

        fun arr(depth: Int): List<Any?> {
            val out = ArrayList<Any?>()
            pos++ // [
            skipWs()
            if (pos < s.length && s[pos] == ']') { pos++; return out }
            while (true) {
                skipWs()
                out.add(value(depth + 1))
                skipWs()
                if (pos < s.length && s[pos] == ',') { pos++; continue }
                expect(']')
                return out
            }
        }

        fun expect(c: Char) {
            if (pos >= s.length || s[pos] != c) fail("expected '$c'")
            pos++
        }

        fun str(): String {
            pos++ // opening quote
            val sb = StringBuilder()
            while (true) {
                if (pos >= s.length) fail("unterminated string")
                val c = s[pos++]
                when {
                    c == '"' -> return sb.toString()
                    c == '\\' -> {
                        if (pos >= s.length) fail("unterminated escape")
                        val e = s[pos++]
                        when (e) {
                            '"' -> sb.append('"')
                            '\\' -> sb.append('\\')
                            '/' -> sb.append('/')
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000C')
                            'n' -> sb.append('\n')
                            'r' -> sb.append('\r')
                            't' -> sb.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) fail("short \\u escape")
                                var code = 0
                                for (k in 0 until 4) {
                                    val d = Character.digit(s[pos + k], 16)
                                    if (d < 0) fail("bad \\u escape")
                                    code = code * 16 + d
                                }
                                pos += 4
                                sb.append(code.toChar())
                            }
                            else -> fail("bad escape '\\$e'")
                        }
                    }
                    c < ' ' -> fail("control character in string")
                    else -> sb.append(c)
                }
            }
        }

        fun num(): JsonNumber {
            val start = pos
            if (s[pos] == '-') pos++
            if (pos < s.length && s[pos] == '0') {
                pos++
            } else {
                if (pos >= s.length || s[pos] !in '1'..'9') fail("bad number")
                while (pos < s.length && s[pos] in '0'..'9') pos++
            }
            if (pos < s.length && s[pos] == '.') {
                pos++
                if (pos >= s.length || s[pos] !in '0'..'9') fail("bad fraction")
                while (pos < s.length && s[pos] in '0'..'9') pos++
            }
            if (pos < s.length && (s[pos] == 'e' || s[pos] == 'E')) {
                pos++
                if (pos < s.length && (s[pos] == '+' || s[pos] == '-')) pos++
                if (pos >= s.length || s[pos] !in '0'..'9') fail("bad exponent")
                while (pos < s.length && s[pos] in '0'..'9') pos++
            }
            return JsonNumber(s.substring(start, pos))
        }
    }
}

/**
 * Typed access to a parsed JSON object with error messages that name the offending path
 * (e.g. `manifest.json: graphs.step.inputs[0].shape: expected a list`).
 */
class JsonObj(val map: Map<String, Any?>, val path: String, val source: String) {
    fun fail(key: String?, why: String): Nothing {
        val where = if (key == null) path else if (path.length == 0) key else "$path.$key"
        throw IllegalArgumentException("$source: ${if (where.length == 0) "<root>" else where}: $why")
    }

    fun has(key: String): Boolean = map.containsKey(key) && map[key] != null

    /** The one-line form of runtime/BUNDLE.md 2.4: `<source>: <path>: expected <what>, got <value>`. */
    fun expected(key: String?, what: String, got: Any?): Nothing = fail(key, "expected $what, got ${show(got)}")

    /** The raw value at [key] (null when absent or null). */
    fun raw(key: String): Any? = map[key]

    fun nonEmptyString(key: String): String {
        val v = need(key)
        if (v !is String || v.isEmpty()) expected(key, "a non-empty string", v)
        return v
    }

    /** An integer in [lo]..[hi] (inclusive; [hi] null = no upper bound). */
    fun intIn(key: String, lo: Long, hi: Long?): Int {
        val v = need(key)
        val n = (v as? JsonNumber)?.let { try { it.toLongExact() } catch (e: IllegalArgumentException) { null } }
        val range = "int in $lo..${hi ?: ""}"
        if (n == null || n < lo || (hi != null && n > hi) || n > Int.MAX_VALUE) expected(key, range, v)
        return n.toInt()
    }

    /** A number that stays finite as float32, in [lo, hi] (or (lo, hi] when [openLo]). */
    fun numberIn(key: String, lo: Double, hi: Double, openLo: Boolean = false): Double {
        val v = need(key)
        val d = (v as? JsonNumber)?.toDouble()
        val ok = d != null && !d.isNaN() && !d.toFloat().isInfinite() && (if (openLo) d > lo else d >= lo) && d <= hi
        if (!ok) expected(key, "number in ${if (openLo) "(" else "["}$lo, $hi]", v)
        return d!!
    }

    /** One of [choices]. */
    fun choice(key: String, choices: List<String>): String {
        val v = need(key)
        if (v !is String || v !in choices) expected(key, "one of ${choices.joinToString(", ", "[", "]") { "\"$it\"" }}", v)
        return v
    }

    private fun need(key: String): Any = map[key] ?: fail(key, "missing (required)")

    fun obj(key: String): JsonObj {
        val v = need(key)
        @Suppress("UNCHECKED_CAST")
        if (v is Map<*, *>) return JsonObj(v as Map<String, Any?>, join(key), source)
        fail(key, "expected an object")
    }

    fun list(key: String): List<Any?> = need(key) as? List<Any?> ?: fail(key, "expected a list")

    fun objList(key: String): List<JsonObj> = list(key).mapIndexed { i, v ->
        @Suppress("UNCHECKED_CAST")
        if (v is Map<*, *>) JsonObj(v as Map<String, Any?>, "${join(key)}[$i]", source)
        else fail("$key[$i]", "expected an object")
    }

    fun string(key: String): String = need(key) as? String ?: fail(key, "expected a string")

    fun stringOrNull(key: String): String? = if (has(key)) string(key) else null

    fun number(key: String): JsonNumber = need(key) as? JsonNumber ?: fail(key, "expected a number")

    fun double(key: String): Double = number(key).toDouble()

    fun int(key: String): Int {
        val n = number(key)
        val v = try { n.toLongExact() } catch (e: IllegalArgumentException) { fail(key, "expected an integer, got $n") }
        if (v < Int.MIN_VALUE || v > Int.MAX_VALUE) fail(key, "integer $v out of range")
        return v.toInt()
    }

    fun long(key: String): Long {
        val n = number(key)
        return try { n.toLongExact() } catch (e: IllegalArgumentException) { fail(key, "expected an integer, got $n") }
    }

    fun bool(key: String): Boolean = need(key) as? Boolean ?: fail(key, "expected true or false")

    fun stringList(key: String): List<String> = list(key).mapIndexed { i, v ->
        v as? String ?: fail("$key[$i]", "expected a string")
    }

    fun intList(key: String): List<Int> = list(key).mapIndexed { i, v ->
        val n = v as? JsonNumber ?: fail("$key[$i]", "expected an integer")
        val l = try { n.toLongExact() } catch (e: IllegalArgumentException) { fail("$key[$i]", "expected an integer, got $n") }
        if (l < Int.MIN_VALUE || l > Int.MAX_VALUE) fail("$key[$i]", "integer $l out of range")
        l.toInt()
    }

    fun doubleList(key: String): List<Double> = list(key).mapIndexed { i, v ->
        (v as? JsonNumber ?: fail("$key[$i]", "expected a number")).toDouble()
    }

    private fun join(key: String) = if (path.length == 0) key else "$path.$key"

    companion object {
        /** A value as short JSON-like text for messages (strings quoted, long values cut). */
        fun show(v: Any?): String {
            val text = when (v) {
                null -> "nothing"
                is String -> "\"$v\""
                is Map<*, *> -> "an object"
                is List<*> -> v.joinToString(", ", "[", "]") { if (it is String) "\"$it\"" else it.toString() }
                else -> v.toString()
            }
            return if (text.length <= 60) text else text.substring(0, 57) + "..."
        }

        /** Parses [text] and requires an object at the root; [source] names the file in errors. */
        fun parse(text: String, source: String): JsonObj {
            val root = try { Json.parse(text) } catch (e: JsonException) {
                throw IllegalArgumentException("$source: ${e.message}")
            }
            @Suppress("UNCHECKED_CAST")
            if (root is Map<*, *>) return JsonObj(root as Map<String, Any?>, "", source)
            throw IllegalArgumentException("$source: expected a JSON object at the root")
        }
    }
}
