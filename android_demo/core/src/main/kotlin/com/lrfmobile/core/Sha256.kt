package com.lrfmobile.core

import java.io.InputStream
import java.security.MessageDigest

/** SHA-256 helpers (java.security, available on every JVM and on Android). */
object Sha256 {
    /** Lower-case hex SHA-256 of a stream, read in 64 KiB chunks; returns (hex, byte count). */
    fun ofStream(input: InputStream): Pair<String, Long> {
        val digest = MessageDigest.getInstance("SHA-256")
        val buffer = ByteArray(1 shl 16)
        var total = 0L
        while (true) {
            val n = input.read(buffer)
            if (n < 0) break
            digest.update(buffer, 0, n)
            total += n
        }
        return Pair(toHex(digest.digest()), total)
    }

    /** Lower-case hex SHA-256 of bytes. */
    fun ofBytes(bytes: ByteArray): String = toHex(MessageDigest.getInstance("SHA-256").digest(bytes))

    /** Lower-case hex of bytes. */
    fun toHex(bytes: ByteArray): String {
        val digits = "0123456789abcdef"
        val sb = StringBuilder(bytes.size * 2)
        for (b in bytes) {
            val v = b.toInt() and 0xFF
            sb.append(digits[v ushr 4]).append(digits[v and 0xF])
        }
        return sb.toString()
    }
}
