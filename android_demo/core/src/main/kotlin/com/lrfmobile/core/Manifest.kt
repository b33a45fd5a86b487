package com.lrfmobile.core

/** A listed bundle file: size in bytes and lower-case hex sha256. */
class FileEntry(val path: String, val size: Long, val sha256: String)

/**
 * A bundle's manifest.json, parsed and validated (runtime/BUNDLE.md, schema v2): the one schema
 * check at load, with one line per failure (`manifest.json: <field>: expected <what>, got <value>`).
 * Mirrors runtime/schema.py `check_manifest` (minus the file checks, see [BundleVerifier]).
 *
 * Everything an app needs comes from here: graph files, tensors by role, class names, latent
 * and image sizes, default steps/guidance/mode, the scheduler shift and the denoise window.
 */
class Manifest(
    val schemaVersion: Int,
    val target: String,
    val precision: String,
    /** A "turbo" model: its denoise graph makes one core call per step (guidance is an input). */
    val guidanceDistilled: Boolean,
    val classes: List<String>,
    /** Latent shape of one image: [C, h, w]. */
    val latentShape: IntArray,
    val imageHeight: Int,
    val imageWidth: Int,
    val imageFormat: String,
    val defaultSteps: Int,
    val defaultGuidance: Float,
    val defaultMode: Mode,
    val shift: Double,
    /** Timesteps stored in the manifest, by N (checked equal to [Schedule.timesteps]). */
    val storedTimesteps: Map<Int, FloatArray>,
    val graphs: Map<String, GraphSpec>,
    val files: Map<String, FileEntry>,
    val golden: GoldenSpec?
) {
    val denoise: GraphSpec get() = graphs.getValue(DENOISE)
    val decoder: GraphSpec get() = graphs.getValue(DECODER)
    /** The image -> latent graph editing needs; null in a bundle without one. */
    val encoder: GraphSpec? get() = graphs[ENCODER]
    val window: WindowSpec get() = denoise.window!!

    fun graph(name: String): GraphSpec = graphs[name]
        ?: throw IllegalArgumentException("bundle has no graph '$name'; graphs: ${graphs.keys.sorted().joinToString()}")

    companion object {
        const val SCHEMA = "lrf-bundle"
        const val SCHEMA_VERSION = 2
        const val FILE_NAME = "manifest.json"
        /** Graph names fixed by the schema (BUNDLE.md 2.2); files and tensor names are not. */
        const val DENOISE = "denoise"
        const val DECODER = "decoder"
        const val ENCODER = "encoder"
        const val SCHEDULER_TYPE = "rectified_flow_euler"
        val TARGETS = listOf("onnx", "executorch", "coreml")
        val PRECISIONS = listOf("fp32", "int8")
        val IMAGE_FORMATS = listOf("uint8_nhwc", "float_nchw")
        const val MAX_DIM = 4096L
        const val MAX_CLASSES = 1000

        /** Parses and validates manifest text; [source] names the file in error messages. */
        fun parse(text: String, source: String = FILE_NAME): Manifest {
            val m = JsonObj.parse(text, source)
            val schema = m.raw("schema")
            if (schema != SCHEMA) m.expected("schema", "\"$SCHEMA\" (is this an LRF bundle?)", schema)
            val version = m.intIn("schema_version", 1, null)
            if (version < SCHEMA_VERSION) throw IllegalArgumentException("$source: bundle schema v$version is no longer " +
                "supported by this runtime (schema v$SCHEMA_VERSION); re-export it with lrf-export")
            if (version > SCHEMA_VERSION) m.fail("schema_version", "bundle schema v$version is newer than this app " +
                "supports (v$SCHEMA_VERSION); update the app or re-export the bundle with the matching lrf-export")

            val target = m.choice("target", TARGETS)
            val precision = m.choice("precision", PRECISIONS)
            val distilled = m.obj("model").let { model ->
                val v = model.raw("guidance_distilled")
                v as? Boolean ?: model.expected("guidance_distilled", "true or false", v)
            }
            val classesRaw = m.raw("classes")
            val classes = (classesRaw as? List<*>)?.filterIsInstance<String>()?.filter { it.isNotEmpty() }
            if (classes == null || classes.size != (classesRaw as List<*>).size || classes.isEmpty() ||
                classes.size > MAX_CLASSES || classes.toSet().size != classes.size) {
                m.expected("classes", "a list of 1..$MAX_CLASSES distinct non-empty strings", classesRaw)
            }
            m.intIn("null_class", classes.size.toLong(), classes.size.toLong())
            val latent = m.obj("latent")
            val latentShape = intArrayOf(latent.intIn("channels", 1, MAX_DIM), latent.intIn("height", 1, MAX_DIM),
                latent.intIn("width", 1, MAX_DIM))
            val codec = m.obj("codec")
            val factor = codec.intIn("scale_factor", 8, 8)
            val image = m.obj("image")
            val imageFormat = image.choice("format", IMAGE_FORMATS)
            val imageHeight = image.intIn("height", factor.toLong() * latentShape[1], factor.toLong() * latentShape[1])
            val imageWidth = image.intIn("width", factor.toLong() * latentShape[2], factor.toLong() * latentShape[2])

            val sampling = m.obj("sampling")
            val defaultSteps = sampling.intIn("steps", 1, Schedule.MAX_STEPS.toLong())
            val guidance = sampling.numberIn("guidance", Schedule.GUIDANCE_MIN, Schedule.GUIDANCE_MAX)
            val shift = sampling.numberIn("shift", 0.0, 1e6, openLo = true)
            val mode = if (sampling.choice("mode", listOf("fused", "stepwise")) == "fused") Mode.FUSED else Mode.STEPWISE
            val stored = parseScheduler(m.obj("scheduler"), shift)

            val rng = m.obj("rng")
            rng.choice("name", listOf(Prng.SPEC_NAME))
            rng.intIn("version", Prng.SPEC_VERSION.toLong(), Prng.SPEC_VERSION.toLong())

            val files = parseFiles(m)
            val graphs = LinkedHashMap<String, GraphSpec>()
            val graphObj = m.obj("graphs")
            for (required in listOf(DENOISE, DECODER)) graphObj.obj(required)
            for (name in graphObj.map.keys) graphs[name] = parseGraph(graphObj.obj(name), name, files)
            GraphRoles.check(graphs, latentShape, imageFormat, source)

            val golden = if (m.has("golden")) GoldenSpec.parse(m.obj("golden"), classes.size, files) else null
            return Manifest(version, target, precision, distilled, classes, latentShape, imageHeight, imageWidth,
                imageFormat, defaultSteps, guidance.toFloat(), mode, shift, stored, graphs, files, golden)
        }

        /** Type, shift and every listed timesteps list, bit-exact with this app's formula. */
        private fun parseScheduler(sched: JsonObj, shift: Double): Map<Int, FloatArray> {
            sched.choice("type", listOf(SCHEDULER_TYPE))
            val s = sched.numberIn("shift", 0.0, 1e6, openLo = true)
            if (s != shift) sched.expected("shift", "$shift (= sampling.shift)", sched.raw("shift"))
            val ts = sched.obj("timesteps")
            val stored = LinkedHashMap<Int, FloatArray>()
            for (key in ts.map.keys) {
                val n = key.toIntOrNull()
                if (n == null || !key.all { it in '0'..'9' } || n < 1 || n > Schedule.MAX_STEPS) {
                    ts.expected(key, "a key N in 1..${Schedule.MAX_STEPS}", key)
                }
                val raw = ts.list(key)
                if (raw.size != n + 1 || raw.any { it !is JsonNumber }) ts.expected(key, "${n + 1} numbers", raw)
                val values = FloatArray(raw.size) { (raw[it] as JsonNumber).toDouble().toFloat() }
                val mine = Schedule.timesteps(n, shift)
                for (i in mine.indices) if (java.lang.Float.floatToIntBits(mine[i]) != java.lang.Float.floatToIntBits(values[i])) {
                    ts.expected("$key[$i]", "${mine[i]} (section 3 formula, shift $shift)", raw[i])
                }
                stored[n] = values
            }
            return stored
        }

        private fun parseFiles(m: JsonObj): Map<String, FileEntry> {
            val files = LinkedHashMap<String, FileEntry>()
            val fileObj = m.obj("files")
            if (fileObj.map.isEmpty()) m.expected("files", "an object listing every bundle file", fileObj.map)
            for (rel in fileObj.map.keys) {
                safeRelPath(rel, fileObj, rel)
                val e = fileObj.obj(rel)
                val size = e.long("size")
                if (size < 0) e.expected("size", "int >= 0", e.raw("size"))
                val sha = e.raw("sha256")
                if (sha !is String || sha.length != 64 || !sha.all { it in '0'..'9' || it in 'a'..'f' }) {
                    e.expected("sha256", "64 lowercase hex digits", sha)
                }
                files[rel] = FileEntry(rel, size, sha)
            }
            return files
        }

        private fun parseGraph(g: JsonObj, name: String, files: Map<String, FileEntry>): GraphSpec {
            val file = safeRelPath(g.string("file"), g, "file")
            if (file !in files && files.keys.none { it.startsWith("$file/") }) g.fail("file",
                "'$file' is not listed in 'files', so its checksum cannot be verified; re-export the bundle")
            val external = if (g.has("external_data")) g.stringList("external_data") else emptyList()
            for ((i, rel) in external.withIndex()) {
                safeRelPath(rel, g, "external_data[$i]")
                if (rel !in files) g.fail("external_data[$i]", "'$rel' is not listed in 'files'; re-export the bundle")
            }
            val window = if (g.has("window")) {
                val w = g.obj("window")
                val min = w.intIn("min", 1, null)
                val max = if (w.has("max")) w.intIn("max", min.toLong(), null) else null
                WindowSpec(min, max)
            } else null
            // BUNDLE.md 2.2.1: only the session set-up depends on it (static QDQ keeps QDQ fusion)
            val staticQdq = g.has("quantization") && g.obj("quantization").let {
                it.has("method") && it.string("method") == "static_qdq"
            }
            return GraphSpec(name, file, g.nonEmptyString("format"), g.objList("inputs").map { TensorSpec.parse(it) },
                g.objList("outputs").map { TensorSpec.parse(it) }, window, external, staticQdq)
        }

        /** Bundle paths: relative, '/'-separated, non-empty parts, no '.'/'..', '\', ':' (BUNDLE.md 2.3). */
        fun safeRelPath(rel: String, where: JsonObj, key: String?): String {
            val parts = rel.split('/')
            if (parts.any { it.isEmpty() || it == "." || it == ".." } || rel.contains('\\') || rel.contains(':')) {
                where.expected(key, "a relative path inside the bundle", rel)
            }
            return rel
        }
    }
}
