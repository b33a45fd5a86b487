package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class JsonTest {
    @Test
    fun parsesAllValueKinds() {
        val v = Json.parse("""{"a": [1, -2.5e3, "x\"\u00e9\n", true, false, null], "b": {}, "c": 18446744073709551621}""")
        @Suppress("UNCHECKED_CAST")
        val m = v as Map<String, Any?>
        val a = m["a"] as List<Any?>
        assertEquals(JsonNumber("1"), a[0])
        assertEquals(-2500.0, (a[1] as JsonNumber).toDouble(), 0.0)
        assertEquals("x\"\u00e9\n", a[2])
        assertEquals(true, a[3])
        assertEquals(false, a[4])
        assertNull(a[5])
        assertEquals(emptyMap<String, Any?>(), m["b"])
        assertEquals("18446744073709551621", (m["c"] as JsonNumber).text)   // kept exactly
        assertEquals(listOf("a", "b", "c"), m.keys.toList())                 // insertion order
    }

    @Test
    fun rejectsMalformedInput() {
        val bad = listOf("", "{", "[1,]", "{\"a\":1,}", "01", "1.", "tru", "\"abc", "{\"a\" 1}",
            "[1] x", "{\"a\":1,\"a\":2}", "\"\\q\"", "-")
        for (text in bad) {
            try {
                Json.parse(text)
                fail("should reject: $text")
            } catch (e: JsonException) {
                assertTrue(e.message!!.startsWith("invalid JSON at offset"))
            }
        }
    }

    @Test
    fun typedAccessNamesThePath() {
        val o = JsonObj.parse("""{"graphs": {"step": {"inputs": [{"shape": "oops"}]}}}""", "manifest.json")
        try {
            o.obj("graphs").obj("step").objList("inputs")[0].intList("shape")
            fail()
        } catch (e: IllegalArgumentException) {
            assertEquals("manifest.json: graphs.step.inputs[0].shape: expected a list", e.message)
        }
        try { o.string("name"); fail() } catch (e: IllegalArgumentException) {
            assertEquals("manifest.json: name: missing (required)", e.message)
        }
    }
}
