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

enum class Mode { AUTO, FUSED, STEPWISE }

/** Wall-clock milliseconds of each phase of one generation. */
class Timings(val noiseMs: Double, val denoiseMs: Double, val decodeMs: Double, val totalMs: Double) {
    override fun toString(): String =
        String.format("noise %.1f ms, denoise %.1f ms, decode %.1f ms, total %.1f ms", noiseMs, denoiseMs, decodeMs, totalMs)
}

/** An ARGB_8888 image (row-major) with how it was made. */
class GeneratedImage(val width: Int, val height: Int, val argb: IntArray, val steps: Int, val mode: Mode, val timings: Timings)

/**
 * Images from a bundle: a mirror of runtime/generator.py `Generator` for one image at a time.
 * Graph sessions open on first use. Thread-safety: calls are serialised by a lock on this
 * object (mobile engines are cheapest driven from one worker thread anyway).
 */
class Generator(val manifest: Manifest, private val engine: Engine) : Closeable {
    private val sessions = HashMap<String, GraphSession>()
    private var closed = false

    /** Default/validated (steps, guidance, mode) as in runtime/generator.py `resolve`. */
    fun resolve(steps: Int?, guidance: Float?, mode: Mode): Triple<Int, Float, Mode> {
        val n = steps ?: manifest.defaultSteps
        require(n >= 1) { "steps must be >= 1, got $n" }
        val g = guidance ?: manifest.defaultGuidance
        require(!g.isNaN() && !g.isInfinite()) { "guidance must be a finite number, got $g" }
        val m = if (mode == Mode.AUTO) (if (manifest.fusedGraph(n) != null) Mode.FUSED else Mode.STEPWISE) else mode
        if (m == Mode.FUSED && manifest.fusedGraph(n) == null) {
            throw IllegalArgumentException("no fused graph for steps=$n; this bundle has fused graphs for " +
                (if (manifest.fusedSteps.isEmpty()) "no N" else manifest.fusedSteps.joinToString()) +
                ": use one of those, stepwise mode, or re-export with --steps $n")
        }
        return Triple(n, g, m)
    }

    /** Label index checked against the manifest's classes. */
    fun checkLabel(label: Int): Int {
        require(label >= 0 && label < manifest.classes.size) {
            "unknown label $label; valid: 0-${manifest.classes.size - 1} (${manifest.classes.joinToString()})"
        }
        return label
    }

    /**
     * One image for [label] and [seed] (unsigned 64-bit in a Long). [onStep] (i, n) is called
     * after step i (1-based); fused mode calls it once with (n, n). Returning false throws
     * [GenerationCancelledException] and returns no image.
     */
    @Synchronized
    fun generate(label: Int, seed: Long, steps: Int? = null, guidance: Float? = null, mode: Mode = Mode.AUTO,
                 onStep: ((Int, Int) -> Boolean)? = null): GeneratedImage {
        val t0 = System.nanoTime()
        val (n, g, m) = resolve(steps, guidance, mode)
        checkLabel(label)
        val shape = intArrayOf(1) + manifest.latentShape                     // [1, C, h, w]
        val noise = Prng.noise(seed, manifest.latentShape)
        val t1 = System.nanoTime()
        val labelT = Tensor.i32(intArrayOf(1), intArrayOf(label))
        val guidanceT = Tensor.f32(intArrayOf(1), floatArrayOf(g))
        val image: Tensor
        val t2: Long
        if (m == Mode.FUSED) {
            image = run(manifest.fusedGraph(n)!!, listOf(Tensor.f32(shape, noise), labelT, guidanceT))[0]
            t2 = System.nanoTime()
            progress(onStep, n, n)
        } else {
            val z = sampleLatent(noise, shape, labelT, guidanceT, n, onStep)
            t2 = System.nanoTime()
            image = run(manifest.graph(Manifest.DECODER), listOf(Tensor.f32(shape, z)))[0]
        }
        val argb = toArgb(image)
        val t3 = System.nanoTime()
        return GeneratedImage(manifest.imageWidth, manifest.imageHeight, argb, n, m,
            Timings(ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t0, t3)))
    }

    /** The stepwise Euler loop: step graph + [Schedule.eulerStep], on one latent. */
    fun sampleLatent(noise: FloatArray, shape: IntArray, label: Tensor, guidance: Tensor, steps: Int,
                     onStep: ((Int, Int) -> Boolean)?): FloatArray {
        val ts = Schedule.timesteps(steps, manifest.shift)
        val step = manifest.graph(Manifest.STEP)
        val z = noise.copyOf()
        for (i in 0 until steps) {
            val v = run(step, listOf(Tensor.f32(shape, z), Tensor.f32(intArrayOf(1), floatArrayOf(ts[i])), label, guidance))[0]
            Schedule.eulerStep(z, v.floats!!, ts[i], ts[i + 1])
            progress(onStep, i + 1, steps)
        }
        return z
    }

    /**
     * Runs [graph] on inputs given in the manifest's input order; names come from the manifest.
     * Inputs and outputs are checked against the manifest (expected vs actual dtype/shape).
     */
    fun run(graph: GraphSpec, inputs: List<Tensor>): List<Tensor> {
        require(inputs.size == graph.inputs.size) { "${graph.name}: expected ${graph.inputs.size} inputs, got ${inputs.size}" }
        val bound = HashMap<String, Int>()
        val feeds = LinkedHashMap<String, Tensor>()
        for (k in inputs.indices) {
            graph.inputs[k].check(inputs[k], graph.name, "input", bound)
            feeds[graph.inputs[k].name] = inputs[k]
        }
        val result = session(graph).run(feeds)
        return graph.outputs.map { spec ->
            val t = result[spec.name] ?: throw IllegalStateException(
                "${graph.name}: the engine returned no output '${spec.name}' (got ${result.keys.joinToString()})")
            spec.check(t, graph.name, "output", bound)
            t
        }
    }

    private fun toArgb(image: Tensor): IntArray {
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
