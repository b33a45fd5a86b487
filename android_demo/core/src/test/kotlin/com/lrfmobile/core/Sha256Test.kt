package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Test

class Sha256Test {
    @Test
    fun knownDigests() {
        assertEquals("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Sha256.ofBytes(ByteArray(0)))
        assertEquals("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            Sha256.ofBytes("abc".toByteArray(Charsets.US_ASCII)))
        // streaming over several 64 KiB chunks gives the same digest as one shot
        val big = ByteArray(200000) { (it * 31 + 7).toByte() }
        val (hex, size) = Sha256.ofStream(java.io.ByteArrayInputStream(big))
        assertEquals(Sha256.ofBytes(big), hex)
        assertEquals(200000L, size)
    }
}
