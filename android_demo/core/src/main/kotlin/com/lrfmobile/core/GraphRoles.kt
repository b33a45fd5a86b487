package com.lrfmobile.core

/**
 * What each graph's inputs and outputs mean, by position (the order of `inputs`/`outputs` in
 * the manifest is the order of the export wrappers, exporter/wrappers.py). Tensor *names* are
 * always taken from the manifest; this only checks that each position has the dtype and rank
 * its role needs, so a bundle the app cannot drive is refused at load time, not mid-generation.
 */
object GraphRoles {
    class Role(val role: String, val dtypes: Set<DType>, val rank: Int)

    private val LATENT = Role("latent", setOf(DType.FLOAT32), 4)
    private val TIME = Role("time", setOf(DType.FLOAT32), 1)
    private val LABEL = Role("label", setOf(DType.INT32), 1)
    private val GUIDANCE = Role("guidance", setOf(DType.FLOAT32), 1)
    private val IMAGE = Role("image", setOf(DType.UINT8, DType.FLOAT32), 4)

    val STEP_INPUTS = listOf(LATENT, TIME, LABEL, GUIDANCE)
    val STEP_OUTPUTS = listOf(Role("velocity", setOf(DType.FLOAT32), 4))
    val DECODER_INPUTS = listOf(LATENT)
    val IMAGE_OUTPUTS = listOf(IMAGE)
    val FUSED_INPUTS = listOf(Role("noise", setOf(DType.FLOAT32), 4), LABEL, GUIDANCE)

    /** Validates the step, decoder and every fused graph; throws IllegalArgumentException. */
    fun check(graphs: Map<String, GraphSpec>, latentShape: IntArray, fusedSteps: List<Int>) {
        graphs[Manifest.STEP]?.let { checkGraph(it, STEP_INPUTS, STEP_OUTPUTS, latentShape) }
        graphs[Manifest.DECODER]?.let { checkGraph(it, DECODER_INPUTS, IMAGE_OUTPUTS, null) }
        for (n in fusedSteps) {
            graphs[Manifest.FUSED_PREFIX + n]?.let { checkGraph(it, FUSED_INPUTS, IMAGE_OUTPUTS, latentShape) }
        }
    }

    private fun checkGraph(g: GraphSpec, ins: List<Role>, outs: List<Role>, latentShape: IntArray?) {
        checkList(g, "inputs", g.inputs, ins)
        checkList(g, "outputs", g.outputs, outs)
        if (latentShape != null) {
            // the first input carries one image's latent [1, C, h, w]: fixed dims must match
            val s = g.inputs[0].shape
            for (k in 1..3) if (s[k] >= 0 && s[k] != latentShape[k - 1]) throw IllegalArgumentException(
                "manifest.json: graphs.${g.name}: input '${g.inputs[0].name}' has shape ${g.inputs[0].describe()} " +
                    "but the manifest's latent is ${latentShape.toList()}")
        }
    }

    private fun checkList(g: GraphSpec, what: String, specs: List<TensorSpec>, roles: List<Role>) {
        if (specs.size != roles.size) throw IllegalArgumentException(
            "manifest.json: graphs.${g.name}: expected ${roles.size} $what (${roles.joinToString { it.role }}), " +
                "got ${specs.size} (${specs.joinToString { it.name }})")
        for (k in roles.indices) {
            val r = roles[k]
            val s = specs[k]
            if (s.dtype !in r.dtypes || s.shape.size != r.rank) throw IllegalArgumentException(
                "manifest.json: graphs.${g.name}: $what[$k] '${s.name}' (the ${r.role}) must be " +
                    "${r.dtypes.joinToString("/") { it.jsonName }} of rank ${r.rank}, " +
                    "got ${s.dtype.jsonName} ${s.describe()}")
        }
    }
}
