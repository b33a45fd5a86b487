package com.lrfmobile.core

/**
 * The editing rules (img2img and inpainting), in ONE place: a line-by-line mirror of
 * lrf/editing.py, which runtime/BUNDLE.md section 8 points to. Pinned by the cross-language
 * golden vectors (golden_vectors.json "editing", derived from the Python code) and, on a device,
 * by a bundle's img2img/inpaint golden cases.
 *
 *     i0     = startIndex(t, strength): the i minimising |t_i - strength| (float64);
 *              a tie goes to the larger i (smaller t: fewer steps)
 *     window = t[i0..N]                   (strength 1 -> i0 = 0, strength 0 -> i0 = N)
 *     z      = noised(zImg, noise, t_i0) = (1 - t) * zImg + t * noise   (float32)
 *     inpaint: after each step, at the new time t: z = keep ? noised(zImg, noise, t) : z
 *     keep   = latentKeepMask(mask): a latent cell is kept only if every pixel of its
 *              f x f block is kept (a pixel is kept when its 8-bit value is >= 128)
 *
 * The mask is a KEEP mask: 255 / white keeps the input, 0 / black is repainted.
 */
object Editing {
    /** [strength] checked to be a number in [0, 1]. */
    fun checkStrength(strength: Double): Double {
        require(!strength.isNaN() && strength >= 0.0 && strength <= 1.0) {
            "strength must be a number in [0, 1] (0 keeps the image, 1 ignores it), got $strength"
        }
        return strength
    }

    /** The schedule index an edit starts at: the nearest t to [strength], ties to the smaller t. */
    fun startIndex(ts: FloatArray, strength: Double): Int {
        checkStrength(strength)
        var best = 0
        var bestD = Double.POSITIVE_INFINITY
        for (i in ts.indices) {
            val d = Math.abs(ts[i].toDouble() - strength)
            if (d <= bestD) {                  // <=: a tie moves to the later index
                best = i
                bestD = d
            }
        }
        return best
    }

    /** (1 - t) zImg + t noise in float32 (t = 1 gives the noise exactly, t = 0 zImg). */
    fun noised(zImg: FloatArray, noise: FloatArray, t: Float): FloatArray {
        require(zImg.size == noise.size) { "image latent has ${zImg.size} values but the noise has ${noise.size}" }
        val a = 1f - t
        return FloatArray(zImg.size) { a * zImg[it] + t * noise[it] }
    }

    /**
     * Inpainting after a step to time [t], in place: kept latent cells take the input re-noised
     * to t. [keep] is [h * w] row-major, broadcast over the [channels] planes of one latent.
     */
    fun blend(z: FloatArray, zImg: FloatArray, noise: FloatArray, t: Float, keep: BooleanArray) {
        require(z.size == zImg.size && z.size == noise.size) { "latents differ in size: ${z.size}, ${zImg.size}, ${noise.size}" }
        require(keep.isNotEmpty() && z.size % keep.size == 0) { "keep mask of ${keep.size} cells does not tile a latent of ${z.size}" }
        val a = 1f - t
        for (k in z.indices) if (keep[k % keep.size]) z[k] = a * zImg[k] + t * noise[k]
    }

    /**
     * A pixel keep mask ([height] x [width] 8-bit values, row-major; >= 128 is kept) -> the latent
     * keep mask [height/f * width/f]: a cell is kept only if all f x f pixels it covers are kept,
     * so every pixel marked for repainting is repainted.
     */
    fun latentKeepMask(mask: ByteArray, height: Int, width: Int, factor: Int = 8): BooleanArray {
        require(height >= factor && width >= factor && height % factor == 0 && width % factor == 0) {
            "image is ${width}x$height; width and height must be positive multiples of $factor: crop or resize it"
        }
        require(mask.size == height * width) { "mask has ${mask.size} pixels but the image is ${width}x$height; give a mask of the image's size" }
        val h = height / factor
        val w = width / factor
        val out = BooleanArray(h * w) { true }
        for (y in 0 until height) for (x in 0 until width) {
            if ((mask[y * width + x].toInt() and 0xFF) < 128) out[(y / factor) * w + x / factor] = false
        }
        return out
    }
}
