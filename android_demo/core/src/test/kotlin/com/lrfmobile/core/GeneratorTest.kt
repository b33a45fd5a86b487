package com.lrfmobile.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** The sampling loop against a fake engine whose graphs are simple known functions. */
class GeneratorTest {
    /** step: v = latent * (1 + label) + guidance (so Euler is checkable by hand);
     *  decoder/generator: image pixel = the first latent value's byte, as uint8 NHWC. */
    private class FakeEngine(val manifest: Manifest, val velocityShape: IntArray? = null) : Engine {
        val calls = ArrayList<String>()
        var closed = 0

        override fun open(graph: GraphSpec): GraphSession = object : GraphSession {
            override fun run(inputs: Map<String, Tensor>): Map<String, Tensor> {
                calls.add(graph.name)
                val names = graph.inputs.map { it.name }
                assertEquals(names, inputs.keys.toList())             // names come from the manifest
                val first = inputs.getValue(names[0])
                return if (graph.name == Manifest.STEP) {
                    val label = inputs.getValue(names[2]).ints!![0]
                    val g = inputs.getValue(names[3]).floats!![0]
                    val shape = velocityShape ?: first.shape
                    val v = FloatArray(shape.fold(1) { a, b -> a * b }) { first.floats!![it] * (1 + label) + g }
                    mapOf(graph.outputs[0].name to Tensor.f32(shape, v))
                } else {
                    val h = manifest.imageHeight
                    val w = manifest.imageWidth
                    val px = (Math.abs(first.floats!![0]) * 10).toInt().toByte()
                    mapOf(graph.outputs[0].name to Tensor.u8(intArrayOf(1, h, w, 3), ByteArray(h * w * 3) { px }))
                }
            }
            override fun close() { closed++ }
        }
    }

    private fun manifest(renameInputs: Boolean = false): Manifest {
        var text = TestJson.resource("sample_manifest.json")
        if (renameInputs) text = text.replace("\"name\": \"latent\"", "\"name\": \"z_in\"")
        return Manifest.parse(text)
    }

    @Test
    fun stepwiseIsTheEulerLoopOverTheStepGraph() {
        val m = manifest(renameInputs = true)
        val engine = FakeEngine(m)
        val gen = Generator(m, engine)
        val progress = ArrayList<String>()
        val img = gen.generate(label = 2, seed = 42L, steps = 5, guidance = 0.5f, mode = Mode.STEPWISE) { i, n ->
            progress.add("$i/$n"); true
        }
        assertEquals(listOf("1/5", "2/5", "3/5", "4/5", "5/5"), progress)
        assertEquals(listOf("step", "step", "step", "step", "step", "decoder"), engine.calls)
        assertEquals(32 * 32, img.argb.size)
        assertEquals(Mode.STEPWISE, img.mode)

        // the same loop by hand
        val z = Prng.noise(42L, intArrayOf(4, 4, 4))
        val ts = Schedule.timesteps(5, 1.0)
        for (i in 0 until 5) Schedule.eulerStep(z, FloatArray(z.size) { z[it] * 3 + 0.5f }, ts[i], ts[i + 1])
        val mine = gen.sampleLatent(Prng.noise(42L, intArrayOf(4, 4, 4)), intArrayOf(1, 4, 4, 4),
            Tensor.i32(intArrayOf(1), intArrayOf(2)), Tensor.f32(intArrayOf(1), floatArrayOf(0.5f)), 5, null)
        assertArrayEquals(z, mine, 0f)
    }

    @Test
    fun autoPicksFusedWhenExported() {
        val m = manifest()
        val engine = FakeEngine(m)
        val gen = Generator(m, engine)
        var calls = 0
        val img = gen.generate(0, 1L, steps = 8) { i, n -> calls++; assertEquals(8, i); assertEquals(8, n); true }
        assertEquals(Mode.FUSED, img.mode)
        assertEquals(listOf("generator_8"), engine.calls)
        assertEquals(1, calls)
        assertTrue(img.timings.totalMs >= 0)
        assertEquals(Mode.STEPWISE, Generator(m, FakeEngine(m)).generate(0, 1L, steps = 7).mode)
    }

    @Test
    fun cancelStopsWithoutAnImage() {
        val m = manifest()
        val engine = FakeEngine(m)
        val gen = Generator(m, engine)
        try {
            gen.generate(1, 5L, steps = 10, mode = Mode.STEPWISE) { i, _ -> i < 3 }
            fail("should have been cancelled")
        } catch (e: GenerationCancelledException) {
            assertTrue(e.message!!, e.message!!.contains("after step 3/10"))
        }
        assertEquals(3, engine.calls.size)                       // decoder never ran
        assertTrue(engine.calls.all { it == "step" })
    }

    @Test
    fun badArgumentsAreRefused() {
        val m = manifest()
        val gen = Generator(m, FakeEngine(m))
        val cases = listOf<Pair<String, () -> Any>>(
            "unknown label 10" to { gen.generate(10, 0L) },
            "unknown label -1" to { gen.generate(-1, 0L) },
            "steps must be >= 1" to { gen.generate(0, 0L, steps = 0) },
            "guidance must be a finite number" to { gen.generate(0, 0L, guidance = Float.NaN) },
            "no fused graph for steps=50; this bundle has fused graphs for 8" to { gen.generate(0, 0L, steps = 50, mode = Mode.FUSED) }
        )
        for ((fragment, call) in cases) {
            try { call(); fail(fragment) } catch (e: IllegalArgumentException) {
                assertTrue("'${e.message}' should contain '$fragment'", e.message!!.contains(fragment))
            }
        }
    }

    @Test
    fun engineOutputIsValidated() {
        val m = manifest()
        val gen = Generator(m, FakeEngine(m, velocityShape = intArrayOf(1, 4, 4, 2)))
        try {
            gen.generate(0, 0L, steps = 2, mode = Mode.STEPWISE); fail()
        } catch (e: IllegalArgumentException) {
            assertEquals("step: output 'velocity' expected shape [batch, 4, 4, 4], got [1, 4, 4, 2]", e.message)
        }
    }

    @Test
    fun inputsAreValidated() {
        val m = manifest()
        val gen = Generator(m, FakeEngine(m))
        val step = m.graph("step")
        val ok = listOf(Tensor.f32(intArrayOf(2, 4, 4, 4), FloatArray(128)), Tensor.f32(intArrayOf(2), FloatArray(2)),
            Tensor.i32(intArrayOf(2), IntArray(2)), Tensor.f32(intArrayOf(2), FloatArray(2)))
        assertEquals(listOf(2, 4, 4, 4), gen.run(step, ok)[0].shapeList())
        val badBatch = ok.toMutableList().also { it[1] = Tensor.f32(intArrayOf(3), FloatArray(3)) }
        try { gen.run(step, badBatch); fail() } catch (e: IllegalArgumentException) {
            assertEquals("step: input 't' has batch=3 but another tensor has batch=2", e.message)
        }
        val badType = ok.toMutableList().also { it[2] = Tensor.f32(intArrayOf(2), FloatArray(2)) }
        try { gen.run(step, badType); fail() } catch (e: IllegalArgumentException) {
            assertEquals("step: input 'label' expected dtype int32, got float32 (shape [2])", e.message)
        }
    }

    @Test
    fun closeReleasesSessions() {
        val m = manifest()
        val engine = FakeEngine(m)
        val gen = Generator(m, engine)
        gen.preload()
        gen.close()
        assertEquals(3, engine.closed)
        try { gen.generate(0, 0L); fail() } catch (e: IllegalStateException) {
            assertTrue(e.message!!.contains("closed"))
        }
    }
}
