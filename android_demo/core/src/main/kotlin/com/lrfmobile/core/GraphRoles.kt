package com.lrfmobile.core

/**
 * What each graph's inputs and outputs mean, by role (runtime/BUNDLE.md 2.2). Tensor names are
 * free; readers bind by role. This checks that every role a graph needs is present once, with
 * the dtype and rank it needs, so a bundle the app cannot drive is refused at load time, not
 * mid-generation.
 */
object GraphRoles {
    class Role(val role: String, val dtypes: Set<DType>, val rank: Int)

    const val LATENT = "latent"
    const val TIMESTEPS = "timesteps"
    const val LABEL = "label"
    const val GUIDANCE = "guidance"
    const val IMAGE = "image"

    private val F32 = setOf(DType.FLOAT32)
    private val DENOISE_INPUTS = listOf(Role(LATENT, F32, 4), Role(TIMESTEPS, F32, 1),
        Role(LABEL, setOf(DType.INT32), 1), Role(GUIDANCE, F32, 1))
    private val LATENT_OUT = listOf(Role(LATENT, F32, 4))
    private val ENCODER_INPUTS = listOf(Role(IMAGE, setOf(DType.UINT8), 4))

    /** Validates denoise, decoder and (when present) encoder; throws IllegalArgumentException. */
    fun check(graphs: Map<String, GraphSpec>, latentShape: IntArray, imageFormat: String, source: String) {
        val imageOut = listOf(Role(IMAGE, setOf(if (imageFormat == "float_nchw") DType.FLOAT32 else DType.UINT8), 4))
        graphs[Manifest.DENOISE]?.let { g ->
            checkGraph(g, DENOISE_INPUTS, LATENT_OUT, source)
            checkLatent(g, g.input(LATENT), latentShape, source)
            checkLatent(g, g.output(LATENT), latentShape, source)
            checkWindow(g, source)
        }
        graphs[Manifest.DECODER]?.let { checkGraph(it, listOf(Role(LATENT, F32, 4)), imageOut, source) }
        graphs[Manifest.ENCODER]?.let { g ->
            // the encoder takes images as the decoder gives them: uint8 NHWC, or float NCHW in [-1, 1]
            val nchw = imageFormat == "float_nchw"
            checkGraph(g, if (nchw) listOf(Role(IMAGE, F32, 4)) else ENCODER_INPUTS, LATENT_OUT, source)
            val img = g.input(IMAGE)
            if (img.shape[if (nchw) 1 else 3] != 3) fail(g, "inputs", img,
                "expected ${if (nchw) "[B, 3, H, W]" else "[B, H, W, 3]"} (RGB), got ${img.describe()}", source)
        }
    }

    private fun fail(g: GraphSpec, side: String, s: TensorSpec, why: String, source: String): Nothing =
        throw IllegalArgumentException("$source: graphs.${g.name}.$side '${s.name}' (role ${s.role}): $why")

    private fun checkGraph(g: GraphSpec, ins: List<Role>, outs: List<Role>, source: String) {
        checkSide(g, "inputs", g.inputs, ins, source)
        checkSide(g, "outputs", g.outputs, outs, source)
    }

    private fun checkSide(g: GraphSpec, side: String, specs: List<TensorSpec>, roles: List<Role>, source: String) {
        val seen = HashSet<String>()
        for (s in specs) if (!seen.add(s.role)) fail(g, side, s, "role '${s.role}' appears twice; each role appears once", source)
        for (r in roles) {
            val s = specs.firstOrNull { it.role == r.role } ?: throw IllegalArgumentException(
                "$source: graphs.${g.name}.$side: expected a tensor with role '${r.role}', got roles " +
                    specs.joinToString(", ", "[", "]") { it.role })
            if (s.dtype !in r.dtypes || s.shape.size != r.rank) fail(g, side, s,
                "expected ${r.dtypes.joinToString("/") { it.jsonName }} of rank ${r.rank}, got ${s.dtype.jsonName} ${s.describe()}", source)
        }
        val unknown = specs.filter { s -> roles.none { it.role == s.role } }
        // an input the app cannot feed makes the graph unusable; an extra output is ignored
        if (side == "inputs" && unknown.isNotEmpty()) fail(g, side, unknown[0],
            "expected roles ${roles.joinToString(", ", "[", "]") { it.role }}, got an input this app cannot feed", source)
    }

    /** A latent [B, C, h, w]: fixed C, h, w must be the manifest's latent. */
    private fun checkLatent(g: GraphSpec, s: TensorSpec, latentShape: IntArray, source: String) {
        for (k in 1..3) if (s.shape[k] >= 0 && s.shape[k] != latentShape[k - 1]) fail(g, if (s in g.inputs) "inputs" else "outputs", s,
            "expected shape [B, ${latentShape.joinToString()}] (the manifest's latent), got ${s.describe()}", source)
    }

    private fun checkWindow(g: GraphSpec, source: String) {
        val w = g.window ?: throw IllegalArgumentException("$source: graphs.${g.name}.window: missing (required)")
        val ts = g.input(TIMESTEPS)
        if (ts.shape[0] >= 0 && (w.max == null || ts.shape[0] != w.max + 1)) fail(g, "inputs", ts,
            "expected shape [${if (w.max == null) "-1" else (w.max + 1).toString()}] (window.max + 1), got ${ts.describe()}", source)
    }
}
