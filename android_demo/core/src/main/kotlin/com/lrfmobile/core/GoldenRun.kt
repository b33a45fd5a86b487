package com.lrfmobile.core

/** A decoded image: ARGB_8888 ints, row-major. */
class ArgbImage(val width: Int, val height: Int, val argb: IntArray) {
    init {
        require(width > 0 && height > 0 && argb.size == width * height) {
            "image of ${width}x$height needs ${width * height} pixels, got ${argb.size}"
        }
    }
}

/**
 * The apps' "Golden test": every golden case of the bundle run through this device's engine and
 * compared with each file's tolerance (runtime/BUNDLE.md section 6): `denoise_first`,
 * `latent_final` and `image` (this bundle, as lrf.runtime ran it), and `reference_latent_final`
 * / `reference_image` (the PyTorch reference, independent of the bundle; the only image a Core ML
 * bundle can ship, since it is written where Core ML cannot run). PNG decoding is the platform's
 * (BitmapFactory, CGImage; javax.imageio in the tests), passed in as [decodePng].
 */
object GoldenRun {
    private val ENGINE_CONTENTS = setOf("denoise_first", "latent_final", "image", "reference_latent_final", "reference_image")

    /** The ids of the cases that have files to compare through the engine, in manifest order. */
    fun caseIds(golden: GoldenSpec): List<String> =
        golden.cases.keys.filter { id -> golden.files.values.any { it.case == id && it.content in ENGINE_CONTENTS && it.tolerance != null } }

    /** Runs every case; one line per compared file; never throws for a mismatch. */
    fun run(generator: Generator, source: BundleSource, decodePng: (ByteArray) -> ArgbImage): GoldenCheck.Report {
        val golden = generator.manifest.golden
            ?: return GoldenCheck.Report(false, listOf("FAIL golden: the manifest has no 'golden' section"))
        val rec = GoldenCheck.Recorder()
        val ids = caseIds(golden)
        if (ids.isEmpty()) return GoldenCheck.Report(false, listOf("FAIL golden: no case has a file to compare through the engine"))
        for (id in ids) runCase(generator, source, decodePng, golden, golden.cases.getValue(id), rec)
        return rec.report()
    }

    private fun runCase(gen: Generator, source: BundleSource, decodePng: (ByteArray) -> ArgbImage, golden: GoldenSpec,
                        case: GoldenCase, rec: GoldenCheck.Recorder) {
        val m = gen.manifest
        val input: EditInput?
        val r: Request
        try {
            input = editInput(m, source, decodePng, golden, case)
            r = if (input == null) gen.resolve(case.label, case.seed, case.steps, case.guidance, case.mode)
                else gen.resolveEdit(input, case.label, case.seed, case.steps, case.guidance, case.mode)
        } catch (e: Exception) {
            rec.record("case ${case.id}") { throw e }
            return
        }
        val files = golden.files.values.filter { it.case == case.id && it.tolerance != null && it.content in ENGINE_CONTENTS }
        // the final latent and image per mode, computed once each
        val latents = HashMap<Mode, FloatArray>()
        val images = HashMap<Mode, IntArray>()
        fun latent(mode: Mode): FloatArray = latents.getOrPut(mode) {
            val rm = if (input == null) gen.resolve(case.label, case.seed, case.steps, case.guidance, mode)
                else gen.resolveEdit(input, case.label, case.seed, case.steps, case.guidance, mode)
            gen.sample(rm, input).first
        }
        for (f in files) rec.record("${f.content}${f.mode?.let { " " + it.name.toLowerCase() } ?: ""} ${case.id}") {
            val mode = f.mode ?: case.mode
            when (f.content) {
                "denoise_first" -> {
                    // the first window of the smallest K the graph takes (t[0..1] for ONNX)
                    val (start, window) = if (input == null) {
                        Pair(Prng.noise(case.seed, m.latentShape), Schedule.timesteps(r.steps, m.shift))
                    } else gen.editStart(input, r).let { Pair(it.latent, it.window) }
                    val k = m.window.min
                    require(window.size > k) { "the case has fewer than $k steps: there is no first window" }
                    val mine = gen.denoiseOnce(start, window.copyOfRange(0, k + 1), r.label, r.guidance)
                    GoldenCheck.compareTensor(mine, GoldenCheck.readF32(source, f), f.tolerance!!)
                }
                "latent_final", "reference_latent_final" ->
                    GoldenCheck.compareTensor(latent(mode), GoldenCheck.readF32(source, f), f.tolerance!!)
                else -> {                                                      // image, reference_image
                    val argb = images.getOrPut(mode) { gen.decode(latent(mode)) }
                    val want = decodePng(source.readBytes(f.file))
                    require(want.width == m.imageWidth && want.height == m.imageHeight) {
                        "${f.file} is ${want.width}x${want.height}, the generated image ${m.imageWidth}x${m.imageHeight}"
                    }
                    val tol = f.tolerance!!
                    require(tol.metric == "psnr_db") { "metric ${tol.metric} does not compare images" }
                    val psnr = GoldenCheck.psnr(argb, want.argb)
                    require(psnr >= tol.bar) { String.format("PSNR %.2f dB, bar %.0f dB", psnr, tol.bar) }
                    String.format("PSNR %.2f dB (bar %.0f dB)", psnr, tol.bar)
                }
            }
        }
    }

    /** An editing case's input image (and inpaint mask) from its golden files; null for generate. */
    fun editInput(m: Manifest, source: BundleSource, decodePng: (ByteArray) -> ArgbImage, golden: GoldenSpec,
                  case: GoldenCase): EditInput? {
        if (case.kind == "generate") return null
        val img = golden.file(case.id, "input_image")
            ?: throw IllegalArgumentException("golden case ${case.id} (${case.kind}) has no input_image file")
        val rgb = Pixels.rgbBytesFromArgb(decodePng(source.readBytes(img.file)).also { checkSize(m, it, img.file) }.argb)
        val mask = if (case.kind == "inpaint") {
            val f = golden.file(case.id, "mask") ?: throw IllegalArgumentException("golden case ${case.id} (inpaint) has no mask file")
            Pixels.grayFromArgb(decodePng(source.readBytes(f.file)).also { checkSize(m, it, f.file) }.argb)
        } else null
        return EditInput(rgb, case.strength!!, mask)
    }

    private fun checkSize(m: Manifest, img: ArgbImage, file: String) = require(img.width == m.imageWidth && img.height == m.imageHeight) {
        "$file is ${img.width}x${img.height}, the bundle's images are ${m.imageWidth}x${m.imageHeight}"
    }
}
