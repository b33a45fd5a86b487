package com.lrfmobile.demo

import android.app.Application
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.setValue
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import com.lrfmobile.core.ArgbImage
import com.lrfmobile.core.BundleVerifier
import com.lrfmobile.core.EditInput
import com.lrfmobile.core.GeneratedImage
import com.lrfmobile.core.GenerationCancelledException
import com.lrfmobile.core.Generator
import com.lrfmobile.core.GoldenCheck
import com.lrfmobile.core.GoldenRun
import com.lrfmobile.core.Manifest
import com.lrfmobile.core.Mode
import com.lrfmobile.core.Pixels
import com.lrfmobile.core.Prng
import com.lrfmobile.core.Schedule
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.util.concurrent.atomic.AtomicBoolean

/** The folder under app/src/main/assets/ that holds the bundle (see README: lrf-export --out). */
const val BUNDLE_ASSET_DIR = "lrf"

/**
 * Screen state and the work behind it. Loading (containment and sha256 of every file, golden
 * self-check) and generation run off the main thread; Compose state is written on the main
 * thread only. All model logic is in the tested core (com.lrfmobile.core).
 */
class DemoViewModel(app: Application) : AndroidViewModel(app) {
    private val source = AssetSource(app.assets, BUNDLE_ASSET_DIR)
    private var generator: Generator? = null
    private val cancelRequested = AtomicBoolean(false)

    var manifest by mutableStateOf<Manifest?>(null)
        private set
    var status by mutableStateOf("Loading bundle from ${source.description} ...")
        private set
    var error by mutableStateOf<String?>(null)
        private set
    var goldenReport by mutableStateOf<String?>(null)
        private set

    var classIndex by mutableStateOf(0)
    var seedText by mutableStateOf("0")
    var steps by mutableStateOf(8)
    var guidance by mutableStateOf(3f)
    var mode by mutableStateOf(Mode.AUTO)

    /** "Start from a photo": the picked photo, centre-cropped and scaled to the bundle's size. */
    var photo by mutableStateOf<Bitmap?>(null)
        private set
    var strength by mutableStateOf(0.6f)

    var running by mutableStateOf(false)
        private set
    var progress by mutableStateOf(0f)
        private set
    var image by mutableStateOf<Bitmap?>(null)
        private set
    var timings by mutableStateOf<String?>(null)
        private set

    init {
        viewModelScope.launch(Dispatchers.IO) { load() }
    }

    private suspend fun load() {
        try {
            val m = BundleVerifier.load(source) { i, n, path ->
                viewModelScope.launch(Dispatchers.Main) { status = "Verifying sha256 ${i + 1}/$n: $path" }
            }
            val report = GoldenCheck.run(m, source)
            val threads = Runtime.getRuntime().availableProcessors().coerceIn(1, 4)
            val gen = Generator(m, OrtEngine(source, threads))
            gen.preload()
            withContext(Dispatchers.Main) {
                generator = gen
                manifest = m
                steps = m.defaultSteps
                guidance = m.defaultGuidance
                goldenReport = (if (report.ok) "Golden check passed\n" else "GOLDEN CHECK FAILED\n") + report
                status = "${m.target} ${m.precision} bundle (schema v${m.schemaVersion}" +
                    (if (m.guidanceDistilled) ", guidance-distilled turbo" else "") + "), ${m.files.size} files verified; " +
                    "denoise window ${m.window}" + (if (m.encoder == null) "; no encoder (no editing)" else "")
            }
        } catch (e: Exception) {
            withContext(Dispatchers.Main) {
                error = e.message ?: e.toString()
                status = "No usable bundle"
            }
        }
    }

    fun randomSeed() {
        seedText = Prng.seedToString(java.util.Random().nextLong())
    }

    /** Whether [mode] can run with the current step count (a fixed-K denoise graph needs N % K == 0). */
    fun modeAvailable(mode: Mode): Boolean {
        val m = manifest ?: return false
        val fused = (if (mode == Mode.AUTO) m.defaultMode else mode) == Mode.FUSED
        return try { Schedule.windows(steps, m.window, fused); true } catch (e: IllegalArgumentException) { false }
    }

    /** Decodes the picked photo off the main thread, centre-crops and scales it to the bundle's image size. */
    fun setPhoto(uri: Uri) {
        val m = manifest ?: return
        val resolver = getApplication<Application>().contentResolver
        viewModelScope.launch(Dispatchers.IO) {
            val result = try {
                val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
                resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, bounds) }
                require(bounds.outWidth > 0 && bounds.outHeight > 0) { "cannot read that photo (not an image?)" }
                // decode at a power-of-two reduction that still leaves >= 2x the target size
                var sample = 1
                while (Math.min(bounds.outWidth, bounds.outHeight) / (sample * 2) >= 2 * Math.max(m.imageWidth, m.imageHeight)) sample *= 2
                val opts = BitmapFactory.Options().apply { inSampleSize = sample; inPreferredConfig = Bitmap.Config.ARGB_8888 }
                val full = resolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, opts) }
                    ?: throw IllegalArgumentException("cannot decode that photo")
                val (x, y, w, h) = Pixels.centerCrop(full.width, full.height, m.imageWidth, m.imageHeight).toList()
                Bitmap.createScaledBitmap(Bitmap.createBitmap(full, x, y, w, h), m.imageWidth, m.imageHeight, true)
            } catch (e: Exception) {
                withContext(Dispatchers.Main) { error = e.message ?: e.toString() }
                null
            }
            if (result != null) withContext(Dispatchers.Main) { photo = result; error = null }
        }
    }

    fun clearPhoto() {
        photo = null
    }

    fun generate() {
        val gen = generator ?: return
        val seed = try { Prng.parseSeed(seedText) } catch (e: IllegalArgumentException) {
            error = e.message; return
        }
        error = null
        running = true
        progress = 0f
        cancelRequested.set(false)
        val label = classIndex
        val n = steps
        val g = guidance
        val m = if (modeAvailable(mode)) mode else Mode.AUTO
        val input = photo?.let { bmp ->
            val argb = IntArray(bmp.width * bmp.height)
            bmp.getPixels(argb, 0, bmp.width, 0, 0, bmp.width, bmp.height)
            EditInput(Pixels.rgbBytesFromArgb(argb), strength.toDouble())
        }
        viewModelScope.launch(Dispatchers.Default) {
            val onStep = { i: Int, total: Int ->
                viewModelScope.launch(Dispatchers.Main) { progress = if (total == 0) 1f else i.toFloat() / total }
                !cancelRequested.get()
            }
            val result: GeneratedImage? = try {
                if (input == null) gen.generate(label, seed, n, g, m, onStep) else gen.edit(input, label, seed, n, g, m, onStep)
            } catch (e: GenerationCancelledException) {
                withContext(Dispatchers.Main) { error = e.message }
                null
            } catch (e: Exception) {
                withContext(Dispatchers.Main) { error = e.message ?: e.toString() }
                null
            }
            withContext(Dispatchers.Main) {
                if (result != null) {
                    image = Bitmap.createBitmap(result.argb, result.width, result.height, Bitmap.Config.ARGB_8888)
                    timings = "${if (input == null) "generate" else "edit"} ${result.mode.name.lowercase()} " +
                        "${result.steps} steps in ${result.calls} calls: ${result.timings}"
                }
                running = false
            }
        }
    }

    /** Asks the running generation to stop after the current denoise call (no image is produced). */
    fun cancel() {
        cancelRequested.set(true)
    }

    /** Runs every golden case of the bundle on this device and compares with its files' tolerances. */
    fun checkGoldenImage() {
        val gen = generator ?: return
        running = true
        viewModelScope.launch(Dispatchers.Default) {
            val report = GoldenRun.run(gen, source, ::decodePng)
            withContext(Dispatchers.Main) {
                goldenReport = (goldenReport ?: "") + "\n" + report
                running = false
            }
        }
    }

    private fun decodePng(bytes: ByteArray): ArgbImage {
        val options = BitmapFactory.Options().apply { inPreferredConfig = Bitmap.Config.ARGB_8888; inScaled = false }
        val png = BitmapFactory.decodeByteArray(bytes, 0, bytes.size, options)
            ?: throw IllegalArgumentException("cannot decode a golden PNG")
        val argb = IntArray(png.width * png.height)
        png.getPixels(argb, 0, png.width, 0, 0, png.width, png.height)
        return ArgbImage(png.width, png.height, argb)
    }

    override fun onCleared() {
        cancelRequested.set(true)
        generator?.close()
    }
}
