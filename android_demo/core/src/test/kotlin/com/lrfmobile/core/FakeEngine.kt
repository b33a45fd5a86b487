package com.lrfmobile.core

import org.junit.Assert.assertEquals

/**
 * An engine whose graphs are simple known functions, so the loops around them can be checked
 * by hand. Tensors are found by role through the manifest's names, as a real file would be fed.
 *  - denoise: for each step i of its window tau, z += (tau[i+1] - tau[i]) * v, v = z * (1 + label) + g;
 *  - encoder: z[c, y, x] = mean of channel c % 3 over pixel block (y, x) / 127.5 - 1;
 *  - decoder: pixel (y, x) channel k = clamp(round(128 + 40 * z[k % C, y / 8, x / 8])), uint8 NHWC.
 * [calls] records "name" or "denoise:K" (K = window length) per call.
 */
class FakeEngine(val manifest: Manifest, val outputShape: IntArray? = null) : Engine {
    val calls = ArrayList<String>()
    var closed = 0

    companion object {
        /** The fake denoise on one window, as a reference for the tests. */
        fun denoise(z0: FloatArray, tau: FloatArray, label: Int, g: Float): FloatArray {
            val z = z0.copyOf()
            for (i in 0 until tau.size - 1) {
                val v = FloatArray(z.size) { z[it] * (1 + label) + g }
                Schedule.eulerStep(z, v, tau[i], tau[i + 1])
            }
            return z
        }
    }

    override fun open(graph: GraphSpec): GraphSession = object : GraphSession {
        override fun run(inputs: Map<String, Tensor>): Map<String, Tensor> {
            assertEquals(graph.inputs.map { it.name }.toSet(), inputs.keys)      // names come from the manifest
            fun byRole(role: String) = inputs.getValue(graph.input(role).name)
            val out = graph.outputs[0].name
            val c = manifest.latentShape[0]
            val h = manifest.latentShape[1]
            val w = manifest.latentShape[2]
            return when (graph.name) {
                Manifest.DENOISE -> {
                    val tau = byRole(GraphRoles.TIMESTEPS).floats!!
                    calls.add("denoise:${tau.size - 1}")
                    val z = denoise(byRole(GraphRoles.LATENT).floats!!, tau, byRole(GraphRoles.LABEL).ints!![0],
                        byRole(GraphRoles.GUIDANCE).floats!![0])
                    val shape = outputShape ?: byRole(GraphRoles.LATENT).shape
                    mapOf(out to Tensor.f32(shape, if (outputShape == null) z else FloatArray(shape.fold(1) { a, b -> a * b })))
                }
                Manifest.ENCODER -> {
                    calls.add(graph.name)
                    val img = byRole(GraphRoles.IMAGE).bytes!!
                    val iw = 8 * w
                    val z = FloatArray(c * h * w) { k ->
                        val ch = k / (h * w) % 3
                        val y = k / w % h
                        val x = k % w
                        var sum = 0
                        for (dy in 0 until 8) for (dx in 0 until 8) sum += img[((8 * y + dy) * iw + 8 * x + dx) * 3 + ch].toInt() and 0xFF
                        sum / 64f / 127.5f - 1f
                    }
                    mapOf(out to Tensor.f32(intArrayOf(1, c, h, w), z))
                }
                else -> {
                    calls.add(graph.name)
                    val z = byRole(GraphRoles.LATENT).floats!!
                    val ih = manifest.imageHeight
                    val iw = manifest.imageWidth
                    val px = ByteArray(ih * iw * 3) { k ->
                        val ch = k % 3
                        val x = k / 3 % iw
                        val y = k / 3 / iw
                        Math.max(0, Math.min(255, Math.round(128 + 40 * z[(ch % c) * h * w + (y / 8) * w + x / 8]))).toByte()
                    }
                    mapOf(out to Tensor.u8(intArrayOf(1, ih, iw, 3), px))
                }
            }
        }
        override fun close() { closed++ }
    }
}

/** Bundle files held in memory, by relative path. */
class MemorySource(val files: Map<String, ByteArray>) : BundleSource {
    override val description = "memory"
    override fun open(relPath: String): java.io.InputStream =
        java.io.ByteArrayInputStream(files[relPath] ?: throw java.io.FileNotFoundException(relPath))
    override fun list(): List<String> = files.keys.sorted()
}
