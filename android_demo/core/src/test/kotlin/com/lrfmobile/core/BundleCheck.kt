package com.lrfmobile.core

import java.io.ByteArrayInputStream
import java.io.File
import javax.imageio.ImageIO
import kotlin.system.exitProcess

/**
 * `run_tests.sh BUNDLE_DIR`: checks a bundle exported by the Python code with this Kotlin port,
 * exactly as the app does at load time: schema v2 validation, containment (no links, nothing
 * unlisted), sha256 of every file, and the engine-free golden files (RNG vectors, every case's
 * timesteps and noise) against their tolerances. With LRF_ENGINE_CMD set (a command that serves
 * graph calls, see [ProcessEngine]; tests/test_cross_language.py runs an onnxruntime one) it also
 * runs every golden case through the Kotlin Generator on the bundle's real graphs, as the app's
 * Golden test does (GoldenRun). Exit status 0 when everything passes.
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
    println("ok   load: ${manifest.target} ${manifest.precision} schema v${manifest.schemaVersion}, " +
        "${manifest.files.size} files sha256-verified and nothing unlisted, graphs ${manifest.graphs.keys.sorted()}, " +
        "denoise window ${manifest.window}, timesteps stored for N ${manifest.storedTimesteps.keys.sorted()} match this scheduler")
    val report = GoldenCheck.run(manifest, source)
    println(report)
    var ok = report.ok
    val golden = manifest.golden
    val engineCmd = System.getenv("LRF_ENGINE_CMD")
    if (golden != null && engineCmd.isNullOrBlank()) {
        println("note engine-only golden cases (checked on a device by the app's Golden test): " +
            GoldenRun.caseIds(golden).joinToString())
    } else if (golden != null) {
        ProcessEngine(engineCmd!!.trim().split(Regex("\\s+")), File(args[0])).use { engine ->
            val run = GoldenRun.run(Generator(manifest, engine), source, ::decodePng)
            println(run)
            ok = ok && run.ok
        }
    }
    exitProcess(if (ok) 0 else 1)
}

/** PNG -> ARGB with javax.imageio; 8-bit gray is read from the raster (getRGB would apply a gamma). */
private fun decodePng(bytes: ByteArray): ArgbImage {
    val img = ImageIO.read(ByteArrayInputStream(bytes)) ?: throw IllegalArgumentException("cannot decode a golden PNG")
    val argb = if (img.raster.numBands == 1) {
        IntArray(img.width * img.height) { p -> img.raster.getSample(p % img.width, p / img.width, 0).let { v -> (0xFF shl 24) or (v shl 16) or (v shl 8) or v } }
    } else img.getRGB(0, 0, img.width, img.height, null, 0, img.width)
    return ArgbImage(img.width, img.height, argb)
}
