package com.lrfmobile.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

/**
 * The editing rules (BUNDLE.md 8) against the golden vectors lrf/editing.py produced
 * (golden_vectors.json "editing"), and Generator.edit's identities on [FakeEngine].
 */
class EditingTest {
    private val e = Golden.root.obj("editing")
    private val m = Manifest.parse(TestJson.resource("sample_manifest.json"))

    @Test
    fun startIndexMatchesPythonIncludingTies() {
        val cases = e.objList("start")
        assertTrue(cases.size >= 30)
        for (c in cases) {
            val ts = Schedule.timesteps(c.int("steps"), c.double("shift"))
            assertEquals("N=${c.int("steps")} shift=${c.double("shift")} strength=${c.double("strength")}",
                c.int("start_index"), Editing.startIndex(ts, c.double("strength")))
        }
        // the exact tie at N=8: 0.0625 is as far from t=0.125 as from t=0; the smaller t wins
        assertEquals(8, Editing.startIndex(Schedule.timesteps(8, 1.0), 0.0625))
    }

    @Test
    fun noisedIsBitExact() {
        val n = e.int("n")
        val zImg = Prng.normal(Prng.parseSeed(e.string("z_img_seed")), n)
        val noise = Prng.normal(Prng.parseSeed(e.string("noise_seed")), n)
        for (c in e.objList("noised")) {
            val t = Golden.floatBits(listOf(c.string("t_bits")))[0]
            assertEquals("t=$t", c.stringList("result_bits"), Golden.bitsOf(Editing.noised(zImg, noise, t)))
        }
    }

    @Test
    fun latentKeepMaskMatchesPython() {
        val masks = e.objList("masks")
        for (c in masks) {
            val bytes = c.intList("mask").map { it.toByte() }.toByteArray()
            val keep = Editing.latentKeepMask(bytes, c.int("height"), c.int("width"))
            assertEquals("${c.int("height")}x${c.int("width")}", c.list("keep"), keep.toList())
        }
        // the first mask mixes kept and repainted cells, so the rule is really exercised
        val first = masks[0].list("keep")
        assertTrue(first.contains(true) && first.contains(false))
    }

    @Test
    fun blendIsBitExact() {
        val b = e.obj("blend")
        val n = e.int("n")
        val z = Prng.normal(Prng.parseSeed(b.string("latent_seed")), n)
        val zImg = Prng.normal(Prng.parseSeed(e.string("z_img_seed")), n)
        val noise = Prng.normal(Prng.parseSeed(e.string("noise_seed")), n)
        val keep = b.list("keep").map { it as Boolean }.toBooleanArray()
        Editing.blend(z, zImg, noise, Golden.floatBits(listOf(b.string("t_bits")))[0], keep)
        assertEquals(b.stringList("result_bits"), Golden.bitsOf(z))
    }

    @Test
    fun badInputsAreRefused() {
        for (s in listOf(-0.1, 1.5, Double.NaN)) {
            try { Editing.startIndex(FloatArray(2), s); fail("$s") } catch (x: IllegalArgumentException) {
                assertTrue(x.message!!, x.message!!.startsWith("strength must be a number in [0, 1]"))
            }
        }
        try { Editing.latentKeepMask(ByteArray(12 * 8), 12, 8); fail() } catch (x: IllegalArgumentException) {
            assertTrue(x.message!!, x.message!!.contains("must be positive multiples of 8"))
        }
        try { Editing.latentKeepMask(ByteArray(10), 8, 8); fail() } catch (x: IllegalArgumentException) {
            assertTrue(x.message!!, x.message!!.contains("give a mask of the image's size"))
        }
    }

    // --- Generator.edit on the fake engine -----------------------------------------------------

    /** A deterministic 32x32 RGB input. */
    private val photo = ByteArray(32 * 32 * 3) { (it * 37 % 251).toByte() }

    private fun gen(engine: FakeEngine = FakeEngine(m)) = Generator(m, engine)

    @Test
    fun strengthOneEqualsGenerate() {
        val engine = FakeEngine(m)
        val edited = gen(engine).edit(EditInput(photo, 1.0), label = 5, seed = 11L, steps = 8)
        assertEquals(listOf("encoder", "denoise:8", "decoder"), engine.calls)
        assertArrayEquals(gen().generate(5, 11L, steps = 8).argb, edited.argb)
    }

    @Test
    fun strengthZeroIsTheCodecRoundTrip() {
        val engine = FakeEngine(m)
        val g = gen(engine)
        val edited = g.edit(EditInput(photo, 0.0), 5, 11L, steps = 8)
        assertEquals(listOf("encoder", "decoder"), engine.calls)                 // no denoising at all
        assertEquals(0, edited.steps)
        assertArrayEquals(g.decode(g.encode(photo)), edited.argb)
    }

    @Test
    fun img2imgStartsAtTheNearestTimestep() {
        val engine = FakeEngine(m)
        val g = gen(engine)
        val progress = ArrayList<String>()
        val edited = g.edit(EditInput(photo, 0.6), 2, 3L, steps = 8, mode = Mode.STEPWISE) { i, n -> progress.add("$i/$n"); true }
        // t = 1, .875, ..., 0: 0.6 is nearest 0.625 = t[3], so 5 steps remain
        assertEquals(listOf("1/5", "2/5", "3/5", "4/5", "5/5"), progress)
        val ts = Schedule.timesteps(8, 1.0)
        val zImg = g.encode(photo)
        val start = Editing.noised(zImg, Prng.noise(3L, m.latentShape), ts[3])
        val z = FakeEngine.denoise(start, ts.copyOfRange(3, 9), 2, 3f)
        assertArrayEquals(g.decode(z), edited.argb)
        assertEquals(5, edited.steps)
    }

    @Test
    fun inpaintKeepsTheMaskedRegion() {
        val engine = FakeEngine(m)
        val g = gen(engine)
        val mask = ByteArray(32 * 32) { p -> if (p / 32 < 16) 255.toByte() else 0 }   // keep the top half
        val edited = g.edit(EditInput(photo, 0.8, mask), 4, 21L, steps = 8, mode = Mode.FUSED)
        // inpainting runs 1-step windows even when fused was asked for
        assertEquals(listOf("encoder") + List(6) { "denoise:1" } + "decoder", engine.calls)
        // by hand: start at t[2] (0.75 is nearest 0.8), blend after every step
        val ts = Schedule.timesteps(8, 1.0)
        val zImg = g.encode(photo)
        val noise = Prng.noise(21L, m.latentShape)
        val keep = Editing.latentKeepMask(mask, 32, 32)
        var z = Editing.noised(zImg, noise, ts[2])
        for (i in 2 until 8) {
            z = FakeEngine.denoise(z, floatArrayOf(ts[i], ts[i + 1]), 4, 3f)
            Editing.blend(z, zImg, noise, ts[i + 1], keep)
        }
        assertArrayEquals(g.decode(z), edited.argb)
        // the kept half is the round trip exactly (t = 0 after the last step); the other half is not
        val roundTrip = g.decode(zImg)
        assertArrayEquals(roundTrip.copyOfRange(0, 16 * 32), edited.argb.copyOfRange(0, 16 * 32))
        assertFalse(roundTrip.copyOfRange(16 * 32, 32 * 32).contentEquals(edited.argb.copyOfRange(16 * 32, 32 * 32)))
    }

    @Test
    fun inpaintWithAnAllKeepMaskReturnsTheRoundTrip() {
        val g = gen()
        val edited = g.edit(EditInput(photo, 0.7, ByteArray(32 * 32) { 255.toByte() }), 1, 2L, steps = 8)
        assertArrayEquals(g.decode(g.encode(photo)), edited.argb)
    }

    @Test
    fun editRefusals() {
        val j = TestJson.sample()
        TestJson.obj(j, "graphs").remove("encoder")
        val noEncoder = Manifest.parse(TestJson.write(j))
        val cases = listOf<Pair<String, () -> Any>>(
            "this bundle has no encoder graph, so it cannot edit images" to
                { Generator(noEncoder, FakeEngine(noEncoder)).edit(EditInput(photo, 0.5), 0, 0L) },
            "the input image must be 32x32 RGB (3072 bytes), got 12 bytes" to { gen().edit(EditInput(ByteArray(12), 0.5), 0, 0L) },
            "strength must be a number in [0, 1]" to { gen().edit(EditInput(photo, 1.01), 0, 0L) },
            "give a mask of the image's size" to { gen().edit(EditInput(photo, 0.5, ByteArray(16)), 0, 0L) }
        )
        for ((fragment, call) in cases) {
            try { call(); fail(fragment) } catch (x: IllegalArgumentException) {
                assertTrue("'${x.message}' should contain '$fragment'", x.message!!.contains(fragment))
            }
        }
    }
}
