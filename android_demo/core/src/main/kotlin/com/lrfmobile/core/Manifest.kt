package com.lrfmobile.core

/** A listed bundle file: size in bytes and lower-case hex sha256. */
class FileEntry(val path: String, val size: Long, val sha256: String)

/** The fixed golden case of a bundle (`golden.case`) and its files by key (`golden.files`). */
class GoldenSpec(
    val seed: Long,
    val label: Int,
    val steps: Int,
    val guidance: Float,
    val files: Map<String, String>,
    val noiseMaxAbs: Double,
    val imagePsnrDb: Double?
)

/**
 * A bundle's manifest.json, parsed and validated (runtime/BUNDLE.md, schema v1). Mirrors
 * runtime/manifest.py `read_manifest` + `open_bundle` (minus the file checks, see [BundleVerifier]).
 *
 * Everything an app needs comes from here: graph files, tensor names/shapes/dtypes, class names,
 * latent and image sizes, default steps/guidance, the scheduler shift and the exported fused N.
 */
class Manifest(
    val schemaVersion: Int,
    val target: String,
    val precision: String,
    val classes: List<String>,
    /** Latent shape of one image: [C, h, w]. */
    val latentShape: IntArray,
    val imageHeight: Int,
    val imageWidth: Int,
    val imageFormat: String,
    val defaultSteps: Int,
    val defaultGuidance: Float,
    val shift: Double,
    /** Timesteps stored in the manifest, by N (checked equal to [Schedule.timesteps]). */
    val storedTimesteps: Map<Int, FloatArray>,
    val fusedSteps: List<Int>,
    val graphs: Map<String, GraphSpec>,
    val files: Map<String, FileEntry>,
    val golden: GoldenSpec?
) {
    /** The fused graph for N steps, or null when N was not exported fused. */
    fun fusedGraph(steps: Int): GraphSpec? = if (steps in fusedSteps) graphs[FUSED_PREFIX + steps] else null

    fun graph(name: String): GraphSpec = graphs[name]
        ?: throw IllegalArgumentException("bundle has no graph '$name'; graphs: ${graphs.keys.sorted().joinToString()}")

    companion object {
        const val SCHEMA = "lrf-bundle"
        const val SCHEMA_VERSION = 1
        const val FILE_NAME = "manifest.json"
        /** Graph names fixed by the schema (BUNDLE.md section 2); files and tensors are not. */
        const val STEP = "step"
        const val DECODER = "decoder"
        const val FUSED_PREFIX = "generator_"
        const val SCHEDULER_TYPE = "rectified_flow_euler"

        /** Parses and validates manifest text; [source] names the file in error messages. */
        fun parse(text: String, source: String = FILE_NAME): Manifest {
            val m = JsonObj.parse(text, source)
            val schema = if (m.has("schema")) m.map["schema"] else null
            if (schema != SCHEMA) m.fail("schema", "expected \"$SCHEMA\", got ${schema ?: "nothing"}; is this an LRF bundle?")
            val version = m.int("schema_version")
            if (version < 1) m.fail("schema_version", "must be a positive integer, got $version")
            if (version > SCHEMA_VERSION) m.fail("schema_version",
                "bundle schema version $version is newer than this app supports ($SCHEMA_VERSION); " +
                    "update the app or re-export the bundle with the matching lrf-export")

            val classes = m.stringList("classes")
            if (classes.isEmpty()) m.fail("classes", "must name at least one class")
            val latent = m.obj("latent")
            val latentShape = intArrayOf(latent.int("channels"), latent.int("height"), latent.int("width"))
            if (latentShape.any { it < 1 }) m.fail("latent", "sizes must be >= 1, got ${latentShape.toList()}")
            val image = m.obj("image")
            val imageFormat = image.string("format")
            if (imageFormat != "uint8_nhwc" && imageFormat != "float_nchw") image.fail("format",
                "'$imageFormat' is not one of uint8_nhwc, float_nchw")

            val sampling = m.obj("sampling")
            val defaultSteps = sampling.int("steps")
            if (defaultSteps < 1) sampling.fail("steps", "must be >= 1, got $defaultSteps")
            val guidance = sampling.double("guidance")
            if (guidance.isNaN() || guidance.isInfinite()) sampling.fail("guidance", "must be finite")

            val sched = m.obj("scheduler")
            if (sched.string("type") != SCHEDULER_TYPE) sched.fail("type",
                "'${sched.string("type")}' is not '$SCHEDULER_TYPE'; this app cannot run that scheduler")
            val shift = if (sched.has("shift")) sched.double("shift") else sampling.double("shift")
            val stored = LinkedHashMap<Int, FloatArray>()
            if (sched.has("timesteps")) {
                val ts = sched.obj("timesteps")
                for (key in ts.map.keys) {
                    val n = key.toIntOrNull() ?: ts.fail(key, "keys must be step counts")
                    val values = ts.doubleList(key)
                    stored[n] = FloatArray(values.size) { values[it].toFloat() }
                    checkSchedule(n, shift, stored.getValue(n), ts, key)
                }
            }

            val rng = m.obj("rng")
            if (rng.string("name") != Prng.SPEC_NAME || rng.int("version") != Prng.SPEC_VERSION) m.fail("rng",
                "noise spec ${rng.string("name")} v${rng.int("version")} is not the one this app implements " +
                    "(${Prng.SPEC_NAME} v${Prng.SPEC_VERSION})")

            val files = LinkedHashMap<String, FileEntry>()
            val fileObj = m.obj("files")
            if (fileObj.map.isEmpty()) m.fail("files", "must list every bundle file")
            for (rel in fileObj.map.keys) {
                val e = fileObj.obj(rel)
                val sha = e.string("sha256")
                if (sha.length != 64 || !sha.all { it in '0'..'9' || it in 'a'..'f' }) e.fail("sha256", "expected 64 lower-case hex digits")
                files[safeRelPath(rel, fileObj)] = FileEntry(rel, e.long("size"), sha)
            }

            val graphs = LinkedHashMap<String, GraphSpec>()
            val graphObj = m.obj("graphs")
            for (name in graphObj.map.keys) {
                val g = graphObj.obj(name)
                val file = safeRelPath(g.string("file"), g)
                if (file !in files && files.keys.none { it.startsWith(file.trimEnd('/') + "/") }) g.fail("file",
                    "'$file' is not listed in 'files', so its checksum cannot be verified; re-export the bundle")
                graphs[name] = GraphSpec(name, file, g.string("format"),
                    g.objList("inputs").map { TensorSpec.parse(it) },
                    g.objList("outputs").map { TensorSpec.parse(it) },
                    if (g.has("steps")) g.int("steps") else null)
            }
            for (required in listOf(STEP, DECODER)) {
                if (required !in graphs) m.fail("graphs", "no '$required' graph; a bundle needs '$STEP' and '$DECODER'")
            }
            val fused = if (m.has("fused_steps")) m.intList("fused_steps") else emptyList()
            for (n in fused) {
                val g = graphs[FUSED_PREFIX + n] ?: m.fail("fused_steps", "lists $n but there is no graph '$FUSED_PREFIX$n'")
                if (g.steps != null && g.steps != n) m.fail("graphs", "'$FUSED_PREFIX$n' says steps=${g.steps}")
            }
            GraphRoles.check(graphs, latentShape, fused)

            return Manifest(version, m.string("target"), if (m.has("precision")) m.string("precision") else "unknown",
                classes, latentShape, image.int("height"), image.int("width"), imageFormat,
                defaultSteps, guidance.toFloat(), shift, stored, fused, graphs, files, parseGolden(m))
        }

        /** The schedule this app computes must be the one the exporter baked in, bit for bit. */
        private fun checkSchedule(n: Int, shift: Double, stored: FloatArray, where: JsonObj, key: String) {
            val mine = try { Schedule.timesteps(n, shift) } catch (e: IllegalArgumentException) {
                where.fail(key, e.message ?: "bad schedule")
            }
            val same = mine.size == stored.size && mine.indices.all {
                java.lang.Float.floatToIntBits(mine[it]) == java.lang.Float.floatToIntBits(stored[it])
            }
            if (!same) where.fail(key, "the manifest's timesteps for N=$n differ from this app's scheduler " +
                "(shift $shift); the bundle and the app disagree on the schedule spec")
        }

        private fun parseGolden(m: JsonObj): GoldenSpec? {
            if (!m.has("golden")) return null
            val g = m.obj("golden")
            val case = g.obj("case")
            val files = LinkedHashMap<String, String>()
            val fo = g.obj("files")
            for (key in fo.map.keys) files[key] = safeRelPath(fo.obj(key).string("file"), fo)
            val tol = if (g.has("tolerances")) g.obj("tolerances") else null
            val seedText = case.number("seed").text
            val seed = try { Prng.parseSeed(seedText) } catch (e: IllegalArgumentException) {
                case.fail("seed", e.message ?: "bad seed")
            }
            return GoldenSpec(seed, case.int("label"), case.int("steps"), case.double("guidance").toFloat(), files,
                if (tol != null && tol.has("noise_max_abs")) tol.double("noise_max_abs") else 1e-6,
                if (tol != null && tol.has("image_psnr_db")) tol.double("image_psnr_db") else null)
        }

        /** Bundle paths are relative and stay inside the bundle (no "..", no absolute paths). */
        fun safeRelPath(rel: String, where: JsonObj): String {
            val parts = rel.replace('\\', '/').split('/')
            if (rel.length == 0 || rel.startsWith("/") || ".." in parts || parts[0].contains(':')) {
                where.fail(null, "file path '$rel' must be relative and inside the bundle")
            }
            return rel
        }
    }
}
