package com.lrfmobile.core

/** Test helpers: serialise parsed JSON back to text, and edit the sample manifest. */
object TestJson {
    fun write(v: Any?): String = StringBuilder().also { write(v, it) }.toString()

    private fun write(v: Any?, sb: StringBuilder) {
        when (v) {
            null -> sb.append("null")
            is String -> {
                sb.append('"')
                for (c in v) when (c) {
                    '"' -> sb.append("\\\"")
                    '\\' -> sb.append("\\\\")
                    '\n' -> sb.append("\\n")
                    else -> sb.append(c)
                }
                sb.append('"')
            }
            is Boolean -> sb.append(v)
            is JsonNumber -> sb.append(v.text)
            is Number -> sb.append(v.toString())
            is Map<*, *> -> {
                sb.append('{')
                var first = true
                for ((k, x) in v) {
                    if (!first) sb.append(',')
                    first = false
                    write(k as String, sb)
                    sb.append(':')
                    write(x, sb)
                }
                sb.append('}')
            }
            is List<*> -> {
                sb.append('[')
                v.forEachIndexed { i, x -> if (i > 0) sb.append(','); write(x, sb) }
                sb.append(']')
            }
            else -> throw IllegalArgumentException("cannot write ${v.javaClass}")
        }
    }

    fun resource(name: String): String {
        val s = TestJson::class.java.getResourceAsStream("/$name") ?: throw IllegalStateException("no resource $name")
        return s.use { String(it.readBytes(), Charsets.UTF_8) }
    }

    /** The sample manifest as mutable maps/lists, to edit in a test. */
    @Suppress("UNCHECKED_CAST")
    fun sample(): MutableMap<String, Any?> = deepCopy(Json.parse(resource("sample_manifest.json"))) as MutableMap<String, Any?>

    @Suppress("UNCHECKED_CAST")
    fun deepCopy(v: Any?): Any? = when (v) {
        is Map<*, *> -> LinkedHashMap<String, Any?>().also { m -> for ((k, x) in v) m[k as String] = deepCopy(x) }
        is List<*> -> ArrayList<Any?>().also { l -> for (x in v) l.add(deepCopy(x)) }
        else -> v
    }

    @Suppress("UNCHECKED_CAST")
    fun obj(m: Any?, vararg path: String): MutableMap<String, Any?> {
        var cur = m
        for (p in path) cur = (cur as Map<String, Any?>)[p]
        return cur as MutableMap<String, Any?>
    }

    @Suppress("UNCHECKED_CAST")
    fun list(m: Any?, vararg path: String): MutableList<Any?> {
        val parent = obj(m, *path.copyOfRange(0, path.size - 1))
        return parent[path.last()] as MutableList<Any?>
    }

    fun num(text: String) = JsonNumber(text)
}
