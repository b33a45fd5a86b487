package com.lrfmobile.demo

import android.app.Application
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.setValue
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import com.lrfmobile.core.BundleVerifier
import com.lrfmobile.core.GeneratedImage
import com.lrfmobile.core.GenerationCancelledException
import com.lrfmobile.core.Generator
import com.lrfmobile.core.GoldenCheck
import com.lrfmobile.core.Manifest
import com.lrfmobile.core.Mode
import com.lrfmobile.core.Prng
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.util.concurrent.atomic.AtomicBoolean

/** The folder under app/src/main/assets/ that holds the bundle (see README: lrf-export --out). */
const val BUNDLE_ASSET_DIR = "lrf"

/**
 * Screen state and the work behind it. Loading (sha256 of every file, golden self-check) and
 * generation run off the main thread; Compose state is written on the main thread only.
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
                status = "${m.target} ${m.precision} bundle, ${m.files.size} files verified; fused N: " +
                    (if (m.fusedSteps.isEmpty()) "none" else m.fusedSteps.joinToString())
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

    /** Whether [mode] can run with the current step count. */
    fun modeAvailable(mode: Mode): Boolean = mode != Mode.FUSED || manifest?.fusedGraph(steps) != null

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
        viewModelScope.launch(Dispatchers.Default) {
            val result: GeneratedImage? = try {
                gen.generate(label, seed, n, g, m) { i, total ->
                    viewModelScope.launch(Dispatchers.Main) { progress = i.toFloat() / total }
                    !cancelRequested.get()
                }
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
                    timings = "${result.mode.name.lowercase()} N=${result.steps}: ${result.timings}"
                }
                running = false
            }
        }
    }

    /** Asks the running generation to stop after the current step (no image is produced). */
    fun cancel() {
        cancelRequested.set(true)
    }

    /** Runs the bundle's golden case stepwise and compares with golden image_stepwise.png. */
    fun checkGoldenImage() {
        val gen = generator ?: return
        val golden = gen.manifest.golden ?: run { error = "this bundle has no golden case"; return }
        val pngPath = golden.files["image_stepwise"] ?: run { error = "golden.files has no image_stepwise"; return }
        running = true
        viewModelScope.launch(Dispatchers.Default) {
            val line = try {
                val img = gen.generate(golden.label, golden.seed, golden.steps, golden.guidance, Mode.STEPWISE)
                val options = BitmapFactory.Options().apply { inPreferredConfig = Bitmap.Config.ARGB_8888; inScaled = false }
                val png = source.open(pngPath).use { BitmapFactory.decodeStream(it, null, options) }
                    ?: throw IllegalStateException("cannot decode $pngPath")
                val want = IntArray(png.width * png.height)
                png.getPixels(want, 0, png.width, 0, 0, png.width, png.height)
                val psnr = GoldenCheck.psnr(img.argb, want)
                val bar = golden.imagePsnrDb ?: 40.0
                String.format("%s golden image: PSNR %.2f dB (bar %.0f dB)", if (psnr >= bar) "ok  " else "FAIL", psnr, bar)
            } catch (e: Exception) {
                "FAIL golden image: ${e.message}"
            }
            withContext(Dispatchers.Main) {
                goldenReport = (goldenReport ?: "") + "\n" + line
                running = false
            }
        }
    }

    override fun onCleared() {
        cancelRequested.set(true)
        generator?.close()
    }
}
