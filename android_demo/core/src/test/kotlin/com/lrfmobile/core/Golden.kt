package com.lrfmobile.core

/** The committed golden vectors (src/test/resources/golden_vectors.json, made by Python). */
object Golden {
    val root: JsonObj by lazy {
        val stream = Golden::class.java.getResourceAsStream("/golden_vectors.json")
            ?: throw IllegalStateException("golden_vectors.json is not on the test classpath")
        val text = stream.use { String(it.readBytes(), Charsets.UTF_8) }
        JsonObj.parse(text, "golden_vectors.json")
    }

    fun floatBits(hex: List<String>): FloatArray =
        FloatArray(hex.size) { java.lang.Float.intBitsToFloat(java.lang.Long.parseLong(hex[it], 16).toInt()) }

    fun bitsOf(values: FloatArray): List<String> =
        values.map { String.format("%08x", java.lang.Float.floatToRawIntBits(it)) }
}
