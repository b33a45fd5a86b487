package com.lrfmobile.core

import java.io.File
import javax.imageio.ImageIO
import kotlin.system.exitProcess

/**
 * `run_tests.sh BUNDLE_DIR`: checks a bundle exported by the Python code with this Kotlin port,
 * exactly as the app does at load time (manifest validation, sha256 of every file, golden RNG /
 * timesteps / noise), plus the pixel conversion on the golden reference image (JVM-only: it
 * decodes the PNG with javax.imageio, which Android lacks, so it lives with the tests).
 * Exit status 0 when everything passes, 1 otherwise.
 */
fun main(args: Array<String>) {
    if (args.size != 1) {
        System.err.println("usage: BundleCheck BUNDLE_DIR")
        exitProcess(2)
    }
    val source = DirectorySource(File(args[0]))
    val manifest = try {
        BundleVerifier.load(source)
    } catch (e: Exception) {
        println("FAIL load: ${e.message}")
        exitProcess(1)
    }
    println("ok   load: ${manifest.target} ${manifest.precision}, ${manifest.files.size} files sha256-verified, " +
        "graphs ${manifest.graphs.keys.sorted()}, fused N ${manifest.fusedSteps}, " +
        "timesteps stored for N ${manifest.storedTimesteps.keys.sorted()} match this scheduler")
    val report = GoldenCheck.run(manifest, source)
    println(report)
    var ok = report.ok
    val golden = manifest.golden
    val refFloat = golden?.files?.get("reference_float")
    val refPng = golden?.files?.get("reference")
    if (refFloat != null && refPng != null) {
        try {
            val x = GoldenCheck.readF32(source.readBytes(refFloat))             // [1, H, W, 3] NHWC in [-1, 1]
            val img = source.open(refPng).use { ImageIO.read(it) } ?: throw IllegalArgumentException("cannot decode $refPng")
            require(x.size == img.width * img.height * 3) { "$refFloat has ${x.size} values for a ${img.width}x${img.height} PNG" }
            var mismatches = 0
            for (y in 0 until img.height) for (xx in 0 until img.width) {
                val base = 3 * (y * img.width + xx)
                val want = img.getRGB(xx, y) and 0xFFFFFF
                val got = (Pixels.toByteValue(x[base]) shl 16) or (Pixels.toByteValue(x[base + 1]) shl 8) or Pixels.toByteValue(x[base + 2])
                if (got != want) mismatches++
            }
            require(mismatches == 0) { "$mismatches of ${img.width * img.height} pixels differ from $refPng" }
            println("ok   pixels: reference float -> uint8 identical to $refPng (${img.width}x${img.height})")
        } catch (e: Exception) {
            ok = false
            println("FAIL pixels: ${e.message}")
        }
    } else {
        ok = false
        println("FAIL pixels: golden.files lacks reference_float/reference")
    }
    exitProcess(if (ok) 0 else 1)
}
