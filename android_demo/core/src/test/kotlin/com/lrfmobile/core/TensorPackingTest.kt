package com.lrfmobile.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.nio.ByteBuffer
import java.nio.FloatBuffer
import java.nio.IntBuffer

/** The app's OrtEngine conversions and open-time checks, on the JVM. */
class TensorPackingTest {
    private fun expectError(fragment: String, body: () -> Unit) {
        try { body(); fail("expected an error containing '$fragment'") } catch (e: IllegalArgumentException) {
            assertTrue("'${e.message}' should contain '$fragment'", e.message!!.contains(fragment))
        }
    }

    @Test
    fun packKeepsValuesShapeAndOrder() {
        val f = TensorPacking.pack(Tensor.f32(intArrayOf(1, 2, 3), floatArrayOf(1f, 2f, 3f, 4f, 5f, -6.5f)))
        assertEquals(listOf(1L, 2L, 3L), f.shape.toList())
        val fb = f.buffer as FloatBuffer
        assertEquals(0, fb.position())
        assertEquals(6, fb.remaining())
        assertEquals(-6.5f, fb.get(5), 0f)
        val i = TensorPacking.pack(Tensor.i32(intArrayOf(2), intArrayOf(7, -1))).buffer as IntBuffer
        assertEquals(listOf(7, -1), listOf(i.get(0), i.get(1)))
        val b = TensorPacking.pack(Tensor.u8(intArrayOf(1, 1, 1, 3), byteArrayOf(0, 127, -1))).buffer as ByteBuffer
        assertEquals(255, b.get(2).toInt() and 0xFF)
    }

    @Test
    fun unpackRoundTripsEveryDtype() {
        val f = floatArrayOf(0.5f, Float.NaN, -0f, 3e38f)
        val t = TensorPacking.unpack("FLOAT", longArrayOf(1, 4), FloatBuffer.wrap(f), "out")
        assertEquals(DType.FLOAT32, t.dtype)
        assertEquals(listOf(1, 4), t.shapeList())
        assertEquals(f.map { java.lang.Float.floatToRawIntBits(it) }, t.floats!!.map { java.lang.Float.floatToRawIntBits(it) })
        assertArrayEquals(intArrayOf(3, -4), TensorPacking.unpack("INT32", longArrayOf(2), IntBuffer.wrap(intArrayOf(3, -4)), "o").ints)
        val bytes = byteArrayOf(1, 2, 3, 4, 5, 6)
        val u = TensorPacking.unpack("UINT8", longArrayOf(1, 1, 2, 3), ByteBuffer.wrap(bytes), "image")
        assertArrayEquals(bytes, u.bytes)
        // reading does not move the engine's buffer
        val buf = FloatBuffer.wrap(f)
        TensorPacking.unpack("FLOAT", longArrayOf(4), buf, "out")
        assertEquals(0, buf.position())
    }

    @Test
    fun unpackRefusesWhatDoesNotFit() {
        expectError("the engine returned 3 values") { TensorPacking.unpack("FLOAT", longArrayOf(2, 2), FloatBuffer.wrap(FloatArray(3)), "v") }
        expectError("dimension 1 is out of range") { TensorPacking.unpack("FLOAT", longArrayOf(1, -1), FloatBuffer.wrap(FloatArray(1)), "v") }
        expectError("too many values") { TensorPacking.unpack("FLOAT", longArrayOf(1 shl 20, 1 shl 20), FloatBuffer.wrap(FloatArray(1)), "v") }
        expectError("v has element type DOUBLE; a bundle graph uses only float32, int32 and uint8") {
            TensorPacking.unpack("DOUBLE", longArrayOf(1), FloatBuffer.wrap(FloatArray(1)), "v")
        }
        expectError("v: a FLOAT tensor came with a") { TensorPacking.unpack("FLOAT", longArrayOf(1), IntBuffer.wrap(IntArray(1)), "v") }
    }

    private fun info(name: String, type: String, vararg shape: Long) = TensorPacking.EngineTensorInfo(name, type, shape)

    @Test
    fun signatureMustMatchTheManifest() {
        val step = Manifest.parse(TestJson.resource("sample_manifest.json")).denoise
        val ins = listOf(info("z_in", "FLOAT", -1, 4, 4, 4), info("ts", "FLOAT", -1), info("y", "INT32", -1), info("g", "FLOAT", -1))
        val outs = listOf(info("denoised", "FLOAT", -1, 4, 4, 4))
        TensorPacking.checkSignature(step, ins, outs)
        TensorPacking.checkSignature(step, ins.reversed(), outs + info("extra_out", "FLOAT", 1))   // order-free; extra outputs unused
        expectError("the file has no input 'y' (it has z_in, ts, g)") {
            TensorPacking.checkSignature(step, ins.filter { it.name != "y" }, outs)
        }
        expectError("output 'denoised' is float32 [?, 4, 4, 2] in the file, manifest says float32 [batch, 4, 4, 4]") {
            TensorPacking.checkSignature(step, ins, listOf(info("denoised", "FLOAT", -1, 4, 4, 2)))
        }
        expectError("input 'y' is float32 [?] in the file, manifest says int32 [batch]") {
            TensorPacking.checkSignature(step, ins.map { if (it.name == "y") info("y", "FLOAT", -1) else it }, outs)
        }
        // a dynamic manifest input must not be fixed in the file; a fixed output dim is fine
        expectError("input 'z_in' is float32 [1, 4, 4, 4] in the file, manifest says float32 [batch, 4, 4, 4]") {
            TensorPacking.checkSignature(step, listOf(info("z_in", "FLOAT", 1, 4, 4, 4)) + ins.drop(1), outs)
        }
        TensorPacking.checkSignature(step, ins, listOf(info("denoised", "FLOAT", 1, 4, 4, 4)))
        expectError("output 'denoised' has element type DOUBLE") {
            TensorPacking.checkSignature(step, ins, listOf(info("denoised", "DOUBLE", -1, 4, 4, 4)))
        }
        expectError("the file has input scale that the manifest does not list") {
            TensorPacking.checkSignature(step, ins + info("scale", "FLOAT", 1), outs)
        }
    }
}
