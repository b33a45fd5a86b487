package com.lrfmobile.core

/** How close a reader's result must be to a golden file (`golden.files.*.tolerance`). */
class Tolerance(val metric: String, val bar: Double) {
    override fun toString(): String = when (metric) {
        "exact" -> "exact"
        "psnr_db" -> String.format("PSNR >= %.0f dB", bar)
        else -> "$metric <= $bar"
    }
}

/** One golden case (`golden.cases.<id>`): what to generate or edit, and how. */
class GoldenCase(
    val id: String,
    /** "generate", "img2img" or "inpaint". */
    val kind: String,
    /** The case's mode; AUTO (the bundle's sampling.mode) when the case names none. */
    val mode: Mode,
    val seed: Long,
    val label: Int,
    val steps: Int,
    val guidance: Float,
    /** Editing cases only. */
    val strength: Double?
)

/** One golden file (`golden.files.<key>`); every entry has all seven fields (null where n/a). */
class GoldenFile(
    val key: String,
    val file: String,
    val format: String,
    val dtype: String?,
    val shape: IntArray?,
    val case: String?,
    /** The content without a mode suffix ("image", not "image_fused"). */
    val content: String,
    /** Null for inputs (input_image, mask), which are not compared. */
    val tolerance: Tolerance?,
    /** The mode a `latent_final_<mode>` / `image_<mode>` file was made in; null: the case's mode. */
    val mode: Mode? = null
)

/** The `golden` section (runtime/BUNDLE.md section 6). */
class GoldenSpec(val runtime: Map<String, String>, val cases: Map<String, GoldenCase>, val files: Map<String, GoldenFile>) {
    /** The file of [content] for case [caseId] (null case id: the bundle-wide files such as rng). */
    fun file(caseId: String?, content: String): GoldenFile? = files.values.firstOrNull { it.case == caseId && it.content == content }

    companion object {
        val KINDS = listOf("generate", "img2img", "inpaint")
        val FORMATS = listOf("json", "f32", "u8", "png")
        val CONTENTS = listOf("rng_vectors", "timesteps", "noise", "denoise_first", "latent_final", "image",
            "reference_latent_final", "reference_image", "input_image", "mask")
        val METRICS = listOf("exact", "max_abs", "rel_max_abs", "psnr_db")
        /**
         * Contents a writer may also suffix with the mode they were made in (`image_fused`,
         * `latent_final_stepwise`): runtime/BUNDLE.md names the mode in the case, the exporter
         * (exporter/golden.py) in the content; both are read.
         */
        private val MODE_CONTENTS = listOf("latent_final", "image")
        private val FILE_KEYS = listOf("file", "format", "dtype", "shape", "case", "content", "tolerance")

        fun parse(g: JsonObj, classCount: Int, files: Map<String, FileEntry>): GoldenSpec {
            val runtime = LinkedHashMap<String, String>()
            if (g.has("runtime")) for ((k, v) in g.obj("runtime").map) runtime[k] = v?.toString() ?: "null"
            val cases = LinkedHashMap<String, GoldenCase>()
            val co = g.obj("cases")
            for (id in co.map.keys) cases[id] = parseCase(co.obj(id), id, classCount)
            val out = LinkedHashMap<String, GoldenFile>()
            val fo = g.obj("files")
            for (key in fo.map.keys) {
                val f = fo.obj(key)
                for (k in FILE_KEYS) if (!f.map.containsKey(k)) f.fail(k, "missing (every golden.files entry has $FILE_KEYS)")
                val file = Manifest.safeRelPath(f.string("file"), f, "file")
                if (file !in files) f.fail("file", "'$file' is not listed in 'files'; re-export the bundle")
                val case = if (f.has("case")) f.string("case") else null
                if (case != null && case !in cases) f.expected("case", "one of the golden.cases ids ${cases.keys}", case)
                val tol = if (f.has("tolerance")) f.obj("tolerance").let {
                    Tolerance(it.choice("metric", METRICS), it.numberIn("bar", 0.0, 1e6))
                } else null
                val content = f.choice("content", CONTENTS + MODE_CONTENTS.flatMap { c -> listOf("${c}_fused", "${c}_stepwise") })
                val base = MODE_CONTENTS.firstOrNull { content.startsWith("${it}_") }
                out[key] = GoldenFile(key, file, f.choice("format", FORMATS),
                    if (f.has("dtype")) f.choice("dtype", listOf("float32", "uint8")) else null,
                    if (f.has("shape")) f.intList("shape").toIntArray() else null,
                    case, base ?: content, tol, base?.let { modeOf(content.removePrefix("${it}_")) })
            }
            return GoldenSpec(runtime, cases, out)
        }

        private fun modeOf(name: String): Mode = if (name == "fused") Mode.FUSED else Mode.STEPWISE

        private fun parseCase(c: JsonObj, id: String, classCount: Int): GoldenCase {
            val kind = c.choice("kind", KINDS)
            // BUNDLE.md: "mode"; exporter/golden.py: "modes" (the modes it has files for)
            val mode = when {
                c.has("mode") -> modeOf(c.choice("mode", listOf("fused", "stepwise")))
                c.has("modes") -> c.stringList("modes").firstOrNull()?.let { m ->
                    if (m != "fused" && m != "stepwise") c.expected("modes", "a list of \"fused\" / \"stepwise\"", c.raw("modes"))
                    modeOf(m)
                } ?: Mode.AUTO
                else -> Mode.AUTO
            }
            val seedRaw = c.raw("seed")
            val seed = (seedRaw as? String)?.let { Prng.parseSeedString(it) }
                ?: c.expected("seed", "a uint64 seed as a decimal string", seedRaw)
            val strength = if (kind == "generate") null else c.numberIn("strength", 0.0, 1.0)
            return GoldenCase(id, kind, mode, seed, c.intIn("label", 0, classCount - 1L),
                c.intIn("steps", 1, Schedule.MAX_STEPS.toLong()),
                c.numberIn("guidance", Schedule.GUIDANCE_MIN, Schedule.GUIDANCE_MAX).toFloat(), strength)
        }
    }
}
