package com.lrfmobile.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/** The sampling loop (BUNDLE.md section 1) against [FakeEngine], whose graphs are known functions. */
class GeneratorTest {
    private val m = Manifest.parse(TestJson.resource("sample_manifest.json"))

    /** The manifest with a fixed-K denoise file (as Core ML and ExecuTorch write). */
    private fun fixedWindow(k: Int): Manifest {
        val j = TestJson.sample()
        TestJson.obj(j, "graphs", "denoise")["window"] = linkedMapOf<String, Any?>("min" to TestJson.num("$k"), "max" to TestJson.num("$k"))
        @Suppress("UNCHECKED_CAST")
        (TestJson.list(j, "graphs", "denoise", "inputs")[1] as MutableMap<String, Any?>)["shape"] = arrayListOf<Any?>(TestJson.num("${k + 1}"))
        return Manifest.parse(TestJson.write(j))
    }

    /** The image the fake engine makes from the Euler loop computed here by hand. */
    private fun byHand(seed: Long, label: Int, g: Float, steps: Int): IntArray {
        val z = FakeEngine.denoise(Prng.noise(seed, m.latentShape), Schedule.timesteps(steps, m.shift), label, g)
        return Generator(m, FakeEngine(m)).decode(z)
    }

    @Test
    fun stepwiseIsOneWindowPerStep() {
        val engine = FakeEngine(m)
        val progress = ArrayList<String>()
        val img = Generator(m, engine).generate(label = 2, seed = 42L, steps = 5, guidance = 0.5f, mode = Mode.STEPWISE) { i, n ->
            progress.add("$i/$n"); true
        }
        assertEquals(listOf("1/5", "2/5", "3/5", "4/5", "5/5"), progress)
        assertEquals(listOf("denoise:1", "denoise:1", "denoise:1", "denoise:1", "denoise:1", "decoder"), engine.calls)
        assertEquals(5, img.calls)
        assertEquals(Mode.STEPWISE, img.mode)
        assertArrayEquals(byHand(42L, 2, 0.5f, 5), img.argb)
    }

    @Test
    fun fusedIsOneCallOverTheWholeScheduleForAnyN() {
        val engine = FakeEngine(m)
        var calls = 0
        val img = Generator(m, engine).generate(1, 7L, steps = 13, guidance = 2f, mode = Mode.FUSED) { i, n ->
            calls++; assertEquals(13, i); assertEquals(13, n); true
        }
        assertEquals(listOf("denoise:13", "decoder"), engine.calls)            // N = 13 was never "exported"
        assertEquals(1, calls)
        val stepwise = Generator(m, FakeEngine(m)).generate(1, 7L, steps = 13, guidance = 2f, mode = Mode.STEPWISE)
        assertArrayEquals(stepwise.argb, img.argb)
        assertArrayEquals(byHand(7L, 1, 2f, 13), img.argb)
    }

    @Test
    fun autoIsTheBundlesSamplingMode() {
        val img = Generator(m, FakeEngine(m)).generate(0, 1L)
        assertEquals(Mode.FUSED, img.mode)
        assertEquals(8, img.steps)
        val j = TestJson.sample()
        TestJson.obj(j, "sampling")["mode"] = "stepwise"
        val engine = FakeEngine(m)
        assertEquals(Mode.STEPWISE, Generator(Manifest.parse(TestJson.write(j)), engine).generate(0, 1L).mode)
        assertEquals(9, engine.calls.size)
    }

    @Test
    fun fixedWindowGraphsRunWindowsOfK() {
        val fixed = fixedWindow(2)
        val engine = FakeEngine(fixed)
        val progress = ArrayList<Int>()
        val img = Generator(fixed, engine).generate(3, 9L, steps = 8, mode = Mode.STEPWISE) { i, _ -> progress.add(i); true }
        assertEquals(listOf("denoise:2", "denoise:2", "denoise:2", "denoise:2", "decoder"), engine.calls)
        assertEquals(listOf(2, 4, 6, 8), progress)
        assertArrayEquals(byHand(9L, 3, 3f, 8), img.argb)
        try {
            Generator(fixed, FakeEngine(fixed)).generate(3, 9L, steps = 7); fail()
        } catch (e: IllegalArgumentException) {
            assertEquals("this bundle's denoise graph takes windows of K = 2 steps, which cannot cover 7 steps; " +
                "use a multiple of 2 steps or re-export the bundle", e.message)
        }
    }

    @Test
    fun cancelStopsWithoutAnImage() {
        val engine = FakeEngine(m)
        try {
            Generator(m, engine).generate(1, 5L, steps = 10, mode = Mode.STEPWISE) { i, _ -> i < 3 }
            fail("should have been cancelled")
        } catch (e: GenerationCancelledException) {
            assertEquals("generation cancelled after step 3/10; no image was produced", e.message)
        }
        assertEquals(listOf("denoise:1", "denoise:1", "denoise:1"), engine.calls)     // decoder never ran
    }

    @Test
    fun badArgumentsAreRefused() {
        val gen = Generator(m, FakeEngine(m))
        val cases = listOf<Pair<String, () -> Any>>(
            "unknown label 10" to { gen.generate(10, 0L) },
            "unknown label -1" to { gen.generate(-1, 0L) },
            "steps must be an integer in 1..1000, got 0" to { gen.generate(0, 0L, steps = 0) },
            "steps must be an integer in 1..1000, got 1001" to { gen.generate(0, 0L, steps = 1001) },
            "guidance must be a finite number in [0.0, 20.0], got NaN" to { gen.generate(0, 0L, guidance = Float.NaN) },
            "guidance must be a finite number in [0.0, 20.0], got 25.0" to { gen.generate(0, 0L, guidance = 25f) },
            "guidance must be a finite number in [0.0, 20.0], got -1.0" to { gen.generate(0, 0L, guidance = -1f) },
            "guidance must be a finite number in [0.0, 20.0], got 1.0E39" to { Schedule.checkGuidance(1e39) }
        )
        for ((fragment, call) in cases) {
            try { call(); fail(fragment) } catch (e: IllegalArgumentException) {
                assertTrue("'${e.message}' should contain '$fragment'", e.message!!.contains(fragment))
            }
        }
    }

    @Test
    fun engineOutputIsValidated() {
        val gen = Generator(m, FakeEngine(m, outputShape = intArrayOf(1, 4, 4, 2)))
        try {
            gen.generate(0, 0L, steps = 2, mode = Mode.STEPWISE); fail()
        } catch (e: IllegalArgumentException) {
            assertEquals("denoise: output 'denoised' (latent) expected shape [batch, 4, 4, 4], got [1, 4, 4, 2]", e.message)
        }
    }

    @Test
    fun inputsAreBoundByRoleAndValidated() {
        val gen = Generator(m, FakeEngine(m))
        val ok = mapOf(GraphRoles.LATENT to Tensor.f32(intArrayOf(2, 4, 4, 4), FloatArray(128)),
            GraphRoles.TIMESTEPS to Tensor.f32(intArrayOf(3), floatArrayOf(1f, 0.5f, 0f)),
            GraphRoles.LABEL to Tensor.i32(intArrayOf(2), IntArray(2)), GraphRoles.GUIDANCE to Tensor.f32(intArrayOf(2), FloatArray(2)))
        assertEquals(listOf(2, 4, 4, 4), gen.run(m.denoise, ok).getValue(GraphRoles.LATENT).shapeList())
        val badBatch = ok + (GraphRoles.LABEL to Tensor.i32(intArrayOf(3), IntArray(3)))
        try { gen.run(m.denoise, badBatch); fail() } catch (e: IllegalArgumentException) {
            assertEquals("denoise: input 'y' (label) has batch=3 but another tensor has batch=2", e.message)
        }
        val badType = ok + (GraphRoles.GUIDANCE to Tensor.i32(intArrayOf(2), IntArray(2)))
        try { gen.run(m.denoise, badType); fail() } catch (e: IllegalArgumentException) {
            assertEquals("denoise: input 'g' (guidance) expected dtype float32, got int32 (shape [2])", e.message)
        }
        try { gen.run(m.denoise, ok - GraphRoles.TIMESTEPS); fail() } catch (e: IllegalArgumentException) {
            assertEquals("denoise: no tensor given for role 'timesteps'", e.message)
        }
    }

    @Test
    fun closeReleasesSessions() {
        val engine = FakeEngine(m)
        val gen = Generator(m, engine)
        gen.preload()
        gen.close()
        assertEquals(3, engine.closed)
        try { gen.generate(0, 0L); fail() } catch (e: IllegalStateException) {
            assertEquals("this Generator is closed; load the bundle again", e.message)
        }
    }
}
