package com.lrfmobile.core

/**
 * Image tensors -> ARGB_8888 pixels (the int layout of android.graphics.Bitmap and of a
 * CGImage with premultipliedFirst/byteOrder32Little), with no platform imports.
 */
object Pixels {
    private const val OPAQUE = -0x1000000 // 0xFF000000

    /** One value in [-1, 1] -> 0..255: floor((clamp(x) + 1) * 127.5 + 0.5) in float32, as
     *  models/reference.py `to_uint8` rounds (half up). NaN maps to 0. */
    fun toByteValue(x: Float): Int {
        if (x.isNaN()) return 0
        val c = if (x < -1f) -1f else if (x > 1f) 1f else x
        val v = Math.floor(((c + 1f) * 127.5f + 0.5f).toDouble()).toInt()
        return if (v < 0) 0 else if (v > 255) 255 else v
    }

    /** uint8 NHWC image ([height, width, 3], one image of a batch) -> ARGB ints, row-major. */
    fun argbFromRgbBytes(rgb: ByteArray, height: Int, width: Int, offset: Int = 0): IntArray {
        checkSize(rgb.size - offset, height, width, "uint8 [H,W,3] image")
        val out = IntArray(height * width)
        for (p in out.indices) {
            val base = offset + 3 * p
            val r = rgb[base].toInt() and 0xFF
            val g = rgb[base + 1].toInt() and 0xFF
            val b = rgb[base + 2].toInt() and 0xFF
            out[p] = OPAQUE or (r shl 16) or (g shl 8) or b
        }
        return out
    }

    /** float32 NCHW image ([3, height, width] in [-1, 1], one image) -> ARGB ints, row-major. */
    fun argbFromFloatChw(x: FloatArray, height: Int, width: Int, offset: Int = 0): IntArray {
        checkSize(x.size - offset, height, width, "float [3,H,W] image")
        val plane = height * width
        val out = IntArray(plane)
        for (p in 0 until plane) {
            val r = toByteValue(x[offset + p])
            val g = toByteValue(x[offset + plane + p])
            val b = toByteValue(x[offset + 2 * plane + p])
            out[p] = OPAQUE or (r shl 16) or (g shl 8) or b
        }
        return out
    }

    /** ARGB ints -> RGB bytes [H, W, 3] (what the encoder graph takes); alpha is dropped. */
    fun rgbBytesFromArgb(argb: IntArray): ByteArray {
        val out = ByteArray(argb.size * 3)
        for (p in argb.indices) {
            out[3 * p] = (argb[p] ushr 16).toByte()
            out[3 * p + 1] = (argb[p] ushr 8).toByte()
            out[3 * p + 2] = argb[p].toByte()
        }
        return out
    }

    /**
     * RGB bytes [H, W, 3] -> float32 [3, H, W] in [-1, 1]: what a `float_nchw` bundle's encoder
     * takes (Core ML has no uint8 arrays): v / 127.5 - 1 in float32, as exporter/wrappers.py
     * `uint8_nhwc_to_image` computes inside the uint8 graphs.
     */
    fun floatChwFromRgbBytes(rgb: ByteArray, height: Int, width: Int): FloatArray {
        checkSize(rgb.size, height, width, "uint8 [H,W,3] image")
        val plane = height * width
        val out = FloatArray(3 * plane)
        for (p in 0 until plane) for (c in 0 until 3) out[c * plane + p] = (rgb[3 * p + c].toInt() and 0xFF) / 127.5f - 1f
        return out
    }

    /** A gray image decoded to ARGB (r = g = b) -> its 8-bit values (the green channel). */
    fun grayFromArgb(argb: IntArray): ByteArray = ByteArray(argb.size) { (argb[it] ushr 8).toByte() }

    /**
     * The centred crop of a [srcWidth] x [srcHeight] photo with the aspect ratio of
     * [dstWidth] x [dstHeight], as (x, y, width, height): what the apps cut before scaling a
     * picked photo to the bundle's image size.
     */
    fun centerCrop(srcWidth: Int, srcHeight: Int, dstWidth: Int, dstHeight: Int): IntArray {
        require(srcWidth > 0 && srcHeight > 0 && dstWidth > 0 && dstHeight > 0) {
            "sizes must be positive, got ${srcWidth}x$srcHeight -> ${dstWidth}x$dstHeight"
        }
        // compare srcW/srcH with dstW/dstH in integers: no rounding decides which side is cut
        return if (srcWidth.toLong() * dstHeight > srcHeight.toLong() * dstWidth) {
            val w = Math.max(1L, srcHeight.toLong() * dstWidth / dstHeight).toInt()
            intArrayOf((srcWidth - w) / 2, 0, w, srcHeight)
        } else {
            val h = Math.max(1L, srcWidth.toLong() * dstHeight / dstWidth).toInt()
            intArrayOf(0, (srcHeight - h) / 2, srcWidth, h)
        }
    }

    private fun checkSize(available: Int, height: Int, width: Int, what: String) {
        require(height > 0 && width > 0) { "image size must be positive, got ${height}x$width" }
        require(available >= 3 * height * width) {
            "$what of ${height}x$width needs ${3 * height * width} values, got $available"
        }
    }
}
