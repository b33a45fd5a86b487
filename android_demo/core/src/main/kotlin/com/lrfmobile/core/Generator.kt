package com.lrfmobile.core

import java.io.Closeable

/** One loaded graph of an inference engine (ONNX Runtime on Android; Core ML in LRFKit). */
interface GraphSession : Closeable {
    /** Runs the graph; inputs and outputs are keyed by the manifest's tensor names. */
    fun run(inputs: Map<String, Tensor>): Map<String, Tensor>
}

/** Opens graph files of a bundle (the engine knows where the bundle lives). */
interface Engine {
    fun open(graph: GraphSpec): GraphSession
}

/** The progress callback returned false: no image is produced. */
class GenerationCancelledException(message: String) : RuntimeException(message)

/** AUTO is the bundle's `sampling.mode`. */
enum class Mode { AUTO, FUSED, STEPWISE }

/** Wall-clock milliseconds of each phase of one generation (encode is 0 unless editing). */
class Timings(val encodeMs: Double, val denoiseMs: Double, val decodeMs: Double, val totalMs: Double) {
    override fun toString(): String =
        String.format("encode %.1f ms, denoise %.1f ms, decode %.1f ms, total %.1f ms", encodeMs, denoiseMs, decodeMs, totalMs)
}

/** An ARGB_8888 image (row-major) with how it was made; [calls] = denoise graph calls. */
class GeneratedImage(val width: Int, val height: Int, val argb: IntArray, val steps: Int, val mode: Mode,
                     val calls: Int, val timings: Timings)

/** A validated request: steps, guidance, mode resolved against the manifest's defaults. */
class Request(val label: Int, val seed: Long, val steps: Int, val guidance: Float, val mode: Mode)

/** An edit's input: RGB bytes [H, W, 3] at the bundle's image size, and an optional keep mask [H, W]. */
class EditInput(val rgb: ByteArray, val strength: Double, val keepMask: ByteArray? = null)

/**
 * Images from a bundle: a mirror of runtime/generator.py `Generator` for one image at a time,
 * following runtime/BUNDLE.md sections 1 and 8. Graph sessions open on first use; tensors are
 * bound by role. Thread-safety: calls are serialised by a lock on this object.
 */
class Generator(val manifest: Manifest, private val engine: Engine) : Closeable {
    private val sessions = HashMap<String, GraphSession>()
    private var closed = false

    /** Default/validated request, as runtime/generator.py `resolve` (BUNDLE.md 2.4). */
    fun resolve(label: Int, seed: Long, steps: Int?, guidance: Float?, mode: Mode): Request {
        val n = Schedule.checkSteps(steps ?: manifest.defaultSteps)
        val g = Schedule.checkGuidance((guidance ?: manifest.defaultGuidance).toDouble())
        require(label >= 0 && label < manifest.classes.size) {
            "unknown label $label; valid: 0-${manifest.classes.size - 1} (${manifest.classes.joinToString()})"
        }
        val m = if (mode == Mode.AUTO) manifest.defaultMode else mode
        Schedule.windows(n, manifest.window, m == Mode.FUSED)       // refuse an N the graph cannot split now
        return Request(label, seed, n, g, m)
    }

    /**
     * One image for [label] and [seed] (unsigned 64-bit in a Long). [onStep] (i, n) is called
     * after each denoise call with the steps done so far; returning false throws
     * [GenerationCancelledException] and returns no image.
     */
    @Synchronized
    fun generate(label: Int, seed: Long, steps: Int? = null, guidance: Float? = null, mode: Mode = Mode.AUTO,
                 onStep: ((Int, Int) -> Boolean)? = null): GeneratedImage {
        val t0 = System.nanoTime()
        val r = resolve(label, seed, steps, guidance, mode)
        val (z, calls) = sample(r, null, onStep)
        val t2 = System.nanoTime()
        val argb = decode(z)
        val t3 = System.nanoTime()
        return GeneratedImage(manifest.imageWidth, manifest.imageHeight, argb, r.steps, r.mode, calls,
            Timings(0.0, ms(t0, t2), ms(t2, t3), ms(t0, t3)))
    }

    /**
     * Image-to-image, or inpainting when [input] has a keep mask (BUNDLE.md 8): encode the
     * input, noise it to t[i0] (i0 from the strength), denoise over t_i0 .. t_N, decode. Inpainting
     * runs 1-step windows and re-imposes the kept region after each. Progress and cancel as in
     * [generate], counting the steps this edit runs (N - i0).
     */
    @Synchronized
    fun edit(input: EditInput, label: Int, seed: Long, steps: Int? = null, guidance: Float? = null,
             mode: Mode = Mode.AUTO, onStep: ((Int, Int) -> Boolean)? = null): GeneratedImage {
        val t0 = System.nanoTime()
        val r = resolveEdit(input, label, seed, steps, guidance, mode)
        val s = editStart(input, r)
        val t1 = System.nanoTime()
        val (z, calls) = denoise(s.latent, s.window, r, s.blend(), onStep)
        val t2 = System.nanoTime()
        val argb = decode(z)
        val t3 = System.nanoTime()
        return GeneratedImage(manifest.imageWidth, manifest.imageHeight, argb, s.window.size - 1, r.mode, calls,
            Timings(ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t0, t3)))
    }

    /** [resolve] for an edit: the strength checked, and stepwise when inpainting. */
    fun resolveEdit(input: EditInput, label: Int, seed: Long, steps: Int?, guidance: Float?, mode: Mode): Request {
        Editing.checkStrength(input.strength)
        return resolve(label, seed, steps, guidance, if (input.keepMask != null) Mode.STEPWISE else mode)
    }

    /** Where an edit starts (BUNDLE.md 8): the encoded input, the noise, the window t_i0 .. t_N and z at t_i0. */
    class EditStart(val zImg: FloatArray, val noise: FloatArray, val window: FloatArray, val latent: FloatArray,
                    val keep: BooleanArray?) {
        /** Inpainting's after-step blend, or null for img2img. */
        fun blend(): ((FloatArray, Float) -> Unit)? = keep?.let { k -> { z: FloatArray, t: Float -> Editing.blend(z, zImg, noise, t, k) } }
    }

    @Synchronized
    fun editStart(input: EditInput, r: Request): EditStart {
        val keep = input.keepMask?.let { Editing.latentKeepMask(it, manifest.imageHeight, manifest.imageWidth) }
        val zImg = encode(input.rgb)
        val noise = Prng.noise(r.seed, manifest.latentShape)
        val ts = Schedule.timesteps(r.steps, manifest.shift)
        val window = ts.copyOfRange(Editing.startIndex(ts, input.strength), ts.size)
        return EditStart(zImg, noise, window, Editing.noised(zImg, noise, window[0]), keep)
    }

    /** The final latent of [r] (an edit when [input] is given) and the number of denoise calls. */
    @Synchronized
    fun sample(r: Request, input: EditInput?, onStep: ((Int, Int) -> Boolean)? = null): Pair<FloatArray, Int> {
        if (input == null) return denoise(Prng.noise(r.seed, manifest.latentShape), Schedule.timesteps(r.steps, manifest.shift), r, null, onStep)
        val s = editStart(input, r)
        return denoise(s.latent, s.window, r, s.blend(), onStep)
    }

    /**
     * The denoise loop over [ts] (K+1 times per window, windows from [Schedule.windows]), from
     * latent [start]. [afterStep] (z, t) runs after every window (inpainting: windows of 1).
     * Returns the final latent and the number of graph calls.
     */
    fun denoise(start: FloatArray, ts: FloatArray, r: Request, afterStep: ((FloatArray, Float) -> Unit)?,
                onStep: ((Int, Int) -> Boolean)?): Pair<FloatArray, Int> {
        val n = ts.size - 1
        if (afterStep != null) require(manifest.window.allows(1)) {
            "this bundle's denoise graph takes windows of ${manifest.window} steps; inpainting needs 1-step windows: re-export the bundle"
        }
        val ends = Schedule.windows(n, manifest.window, r.mode == Mode.FUSED && afterStep == null)
        val shape = intArrayOf(1) + manifest.latentShape
        val label = Tensor.i32(intArrayOf(1), intArrayOf(r.label))
        val guidance = Tensor.f32(intArrayOf(1), floatArrayOf(r.guidance))
        var z = start
        var i0 = 0
        for (i1 in ends) {
            val window = Tensor.f32(intArrayOf(i1 - i0 + 1), ts.copyOfRange(i0, i1 + 1))
            z = run(manifest.denoise, mapOf(GraphRoles.LATENT to Tensor.f32(shape, z), GraphRoles.TIMESTEPS to window,
                GraphRoles.LABEL to label, GraphRoles.GUIDANCE to guidance)).getValue(GraphRoles.LATENT).floats!!
            afterStep?.invoke(z, ts[i1])
            progress(onStep, i1, n)
            i0 = i1
        }
        return Pair(z, ends.size)
    }

    /** One denoise call over [window] (K+1 times) from [z]: the golden `denoise_first` check. */
    @Synchronized
    fun denoiseOnce(z: FloatArray, window: FloatArray, label: Int, guidance: Float): FloatArray =
        run(manifest.denoise, mapOf(GraphRoles.LATENT to Tensor.f32(intArrayOf(1) + manifest.latentShape, z),
            GraphRoles.TIMESTEPS to Tensor.f32(intArrayOf(window.size), window),
            GraphRoles.LABEL to Tensor.i32(intArrayOf(1), intArrayOf(label)),
            GraphRoles.GUIDANCE to Tensor.f32(intArrayOf(1), floatArrayOf(guidance)))).getValue(GraphRoles.LATENT).floats!!

    /** RGB bytes [H, W, 3] at the bundle's image size -> the normalised latent [C*h*w]. */
    @Synchronized
    fun encode(rgb: ByteArray): FloatArray {
        val enc = manifest.encoder ?: throw IllegalArgumentException(
            "this bundle has no encoder graph, so it cannot edit images; re-export it with lrf-export (schema v2)")
        val h = manifest.imageHeight
        val w = manifest.imageWidth
        require(rgb.size == h * w * 3) { "the input image must be ${w}x$h RGB (${h * w * 3} bytes), got ${rgb.size} bytes" }
        val image = if (manifest.imageFormat == "float_nchw") Tensor.f32(intArrayOf(1, 3, h, w), Pixels.floatChwFromRgbBytes(rgb, h, w))
            else Tensor.u8(intArrayOf(1, h, w, 3), rgb)
        return run(enc, mapOf(GraphRoles.IMAGE to image)).getValue(GraphRoles.LATENT).floats!!
    }

    /** A latent [C*h*w] -> ARGB pixels of the bundle's image size. */
    @Synchronized
    fun decode(z: FloatArray): IntArray {
        val image = run(manifest.decoder, mapOf(GraphRoles.LATENT to Tensor.f32(intArrayOf(1) + manifest.latentShape, z)))
            .getValue(GraphRoles.IMAGE)
        val s = image.shape
        return if (image.dtype == DType.UINT8) {                                 // [1, H, W, 3]
            require(s[1] == manifest.imageHeight && s[2] == manifest.imageWidth && s[3] == 3) {
                "decoder returned ${image.shapeList()}, manifest image is ${manifest.imageHeight}x${manifest.imageWidth}x3"
            }
            Pixels.argbFromRgbBytes(image.bytes!!, s[1], s[2])
        } else {                                                                 // [1, 3, H, W] in [-1, 1]
            require(s[1] == 3 && s[2] == manifest.imageHeight && s[3] == manifest.imageWidth) {
                "decoder returned ${image.shapeList()}, manifest image is 3x${manifest.imageHeight}x${manifest.imageWidth}"
            }
            Pixels.argbFromFloatChw(image.floats!!, s[2], s[3])
        }
    }

    /**
     * Runs [graph] on inputs given by role; returns its outputs by role. Names come from the
     * manifest; inputs and outputs are checked against it (expected vs actual dtype/shape, with
     * dynamic dims bound across the call).
     */
    fun run(graph: GraphSpec, inputs: Map<String, Tensor>): Map<String, Tensor> {
        val bound = HashMap<String, Int>()
        val feeds = LinkedHashMap<String, Tensor>()
        for (spec in graph.inputs) {
            val t = inputs[spec.role] ?: throw IllegalArgumentException("${graph.name}: no tensor given for role '${spec.role}'")
            spec.check(t, graph.name, "input", bound)
            feeds[spec.name] = t
        }
        val result = session(graph).run(feeds)
        val out = LinkedHashMap<String, Tensor>()
        for (spec in graph.outputs) {
            val t = result[spec.name] ?: throw IllegalStateException(
                "${graph.name}: the engine returned no output '${spec.name}' (got ${result.keys.joinToString()})")
            spec.check(t, graph.name, "output", bound)
            out[spec.role] = t
        }
        return out
    }

    private fun session(graph: GraphSpec): GraphSession {
        check(!closed) { "this Generator is closed; load the bundle again" }
        return sessions[graph.name] ?: engine.open(graph).also { sessions[graph.name] = it }
    }

    /** Opens every graph now (so the first generation's timings exclude loading). */
    @Synchronized
    fun preload() {
        for (g in manifest.graphs.values) session(g)
    }

    @Synchronized
    override fun close() {
        closed = true
        for (s in sessions.values) s.close()
        sessions.clear()
    }

    private fun progress(onStep: ((Int, Int) -> Boolean)?, i: Int, n: Int) {
        if (onStep != null && !onStep(i, n)) {
            throw GenerationCancelledException("generation cancelled after step $i/$n; no image was produced")
        }
    }

    private fun ms(a: Long, b: Long) = (b - a) / 1e6
}
