package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test
import java.awt.image.BufferedImage
import java.io.ByteArrayInputStream
import java.io.ByteArrayOutputStream
import javax.imageio.ImageIO

/**
 * The apps' Golden test (GoldenRun) with [FakeEngine]: a bundle's golden files are written here
 * from the fake engine's known functions computed by hand (not through GoldenRun), then one value
 * is changed to show each comparison can fail.
 */
class GoldenRunTest {
    private val base = Manifest.parse(TestJson.resource("sample_manifest.json"))

    private fun png(img: ArgbImage, gray: Boolean = false): ByteArray {
        val b = BufferedImage(img.width, img.height, if (gray) BufferedImage.TYPE_BYTE_GRAY else BufferedImage.TYPE_INT_RGB)
        if (gray) for (y in 0 until img.height) for (x in 0 until img.width) b.raster.setSample(x, y, 0, img.argb[y * img.width + x] and 0xFF)
        else b.setRGB(0, 0, img.width, img.height, img.argb, 0, img.width)
        return ByteArrayOutputStream().also { ImageIO.write(b, "png", it) }.toByteArray()
    }

    private fun decode(bytes: ByteArray): ArgbImage {
        val b = ImageIO.read(ByteArrayInputStream(bytes))
        return ArgbImage(b.width, b.height, b.getRGB(0, 0, b.width, b.height, null, 0, b.width))
    }

    private val photo = ArgbImage(32, 32, IntArray(32 * 32) { p -> (0xFF shl 24) or ((p * 7 % 256) shl 16) or ((p * 13 % 256) shl 8) or (p % 256) })
    private val mask = ArgbImage(32, 32, IntArray(32 * 32) { p -> if (p % 32 < 16) 0xFFFFFFFF.toInt() else 0xFF000000.toInt() })

    /** A bundle (manifest + files) whose golden files hold the fake engine's results, by hand. */
    private fun bundle(tamper: String? = null): Pair<Manifest, MemorySource> {
        val j = TestJson.sample()
        val gf = TestJson.obj(j, "golden", "files")
        gf.clear()
        val listed = TestJson.obj(j, "files")
        val data = LinkedHashMap<String, ByteArray>()
        fun add(key: String, file: String, format: String, case: String, content: String, metric: String?, bar: String, bytes: ByteArray) {
            gf[key] = GoldenCheckTest.entry(file, format, case, content, metric, bar)
            listed[file] = linkedMapOf<String, Any?>("size" to TestJson.num("1"), "sha256" to "0".repeat(64))
            data[file] = bytes
        }
        val gen = Generator(base, FakeEngine(base))
        val shape = base.latentShape
        // generate_fused_8: seed 2^64-1, label 3, N = 8, guidance 3
        val ts8 = Schedule.timesteps(8, 1.0)
        val noise = Prng.noise(-1L, shape)
        val first = FakeEngine.denoise(noise, ts8.copyOfRange(0, 2), 3, 3f)
        val final = FakeEngine.denoise(noise, ts8, 3, 3f)
        if (tamper == "latent") final[5] += 0.5f
        val image = gen.decode(final).also { if (tamper == "image") for (p in 0 until 512) it[p] = it[p] xor 0x1F }
        add("first", "golden/first.f32", "f32", "generate_fused_8", "denoise_first", "rel_max_abs", "1e-3", GoldenCheckTest.f32(first))
        add("final", "golden/final.f32", "f32", "generate_fused_8", "latent_final", "rel_max_abs", "1e-3", GoldenCheckTest.f32(final))
        add("ref", "golden/ref.f32", "f32", "generate_fused_8", "reference_latent_final", "rel_max_abs", "1e-3",
            GoldenCheckTest.f32(FakeEngine.denoise(noise, ts8, 3, 3f)))
        add("image", "golden/image.png", "png", "generate_fused_8", "image", "psnr_db", "40", png(ArgbImage(32, 32, image)))
        // inpaint_stepwise_8: seed 7, label 5, strength 0.8 -> start at t[2]; keep the left half
        val zImg = gen.encode(Pixels.rgbBytesFromArgb(photo.argb))
        val n7 = Prng.noise(7L, shape)
        val keep = Editing.latentKeepMask(Pixels.grayFromArgb(mask.argb), 32, 32)
        var z = Editing.noised(zImg, n7, ts8[2])
        for (i in 2 until 8) {
            z = FakeEngine.denoise(z, floatArrayOf(ts8[i], ts8[i + 1]), 5, 3f)
            Editing.blend(z, zImg, n7, ts8[i + 1], keep)
        }
        add("in", "golden/in.png", "png", "inpaint_stepwise_8", "input_image", null, "0", png(photo))
        add("mask", "golden/mask.png", "png", "inpaint_stepwise_8", "mask", null, "0", png(mask, gray = true))
        add("inpainted", "golden/inpainted.png", "png", "inpaint_stepwise_8", "image", "psnr_db", "40", png(ArgbImage(32, 32, gen.decode(z))))
        return Pair(Manifest.parse(TestJson.write(j)), MemorySource(data))
    }

    private fun run(tamper: String? = null): GoldenCheck.Report {
        val (m, source) = bundle(tamper)
        return GoldenRun.run(Generator(m, FakeEngine(m)), source, ::decode)
    }

    @Test
    fun everyCaseAndFileIsCompared() {
        val r = run()
        assertTrue(r.toString(), r.ok)
        assertEquals(listOf("ok   denoise_first generate_fused_8", "ok   latent_final generate_fused_8",
            "ok   reference_latent_final generate_fused_8", "ok   image generate_fused_8", "ok   image inpaint_stepwise_8"),
            r.lines.map { it.substringBefore(":") })
        assertTrue(r.toString(), r.lines[4].endsWith("PSNR 100.00 dB (bar 40 dB)"))
    }

    @Test
    fun aChangedLatentOrImageFails() {
        val lat = run("latent")
        assertFalse(lat.ok)
        assertTrue(lat.toString(), lat.lines[1].startsWith("FAIL latent_final generate_fused_8: rel_max_abs"))
        assertTrue(lat.toString(), lat.lines[2].startsWith("ok   reference_latent_final"))
        val img = run("image")
        assertFalse(img.ok)
        assertTrue(img.toString(), img.lines[3].startsWith("FAIL image generate_fused_8: PSNR"))
        assertTrue(img.toString(), img.lines[4].startsWith("ok   image inpaint_stepwise_8"))
    }

    @Test
    fun aBundleWithoutEngineFilesSaysSo() {
        val r = GoldenRun.run(Generator(base, FakeEngine(base)), MemorySource(emptyMap()), ::decode)
        // the sample's only engine file is image_generate_fused_8, which is missing here
        assertFalse(r.ok)
        assertTrue(r.toString(), r.lines[0].startsWith("FAIL image generate_fused_8:"))
    }
}
