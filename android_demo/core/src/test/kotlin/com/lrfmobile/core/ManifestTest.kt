package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class ManifestTest {
    private fun parse(m: Map<String, Any?>) = Manifest.parse(TestJson.write(m))

    private fun expectError(fragment: String, edit: (MutableMap<String, Any?>) -> Unit) {
        val m = TestJson.sample()
        edit(m)
        try {
            parse(m)
            fail("expected an error containing '$fragment'")
        } catch (e: IllegalArgumentException) {
            assertTrue("'${e.message}' should contain '$fragment'", e.message!!.contains(fragment))
            assertFalse("one line: '${e.message}'", e.message!!.contains('\n'))
        }
    }

    @Suppress("UNCHECKED_CAST")
    private fun tensor(m: Any?, graph: String, side: String, k: Int) = TestJson.list(m, "graphs", graph, side)[k] as MutableMap<String, Any?>

    @Test
    fun sampleParsesAndEverythingComesFromTheManifest() {
        val m = Manifest.parse(TestJson.resource("sample_manifest.json"))
        assertEquals(2, m.schemaVersion)
        assertEquals("onnx", m.target)
        assertFalse(m.guidanceDistilled)
        assertEquals(10, m.classes.size)
        assertEquals("cat", m.classes[3])
        assertEquals(listOf(4, 4, 4), m.latentShape.toList())
        assertEquals(32, m.imageHeight)
        assertEquals(8, m.defaultSteps)
        assertEquals(3.0f, m.defaultGuidance)
        assertEquals(Mode.FUSED, m.defaultMode)
        // file and tensor names are whatever the manifest says (deliberately unusual in the sample)
        assertEquals("a/denoise.onnx", m.denoise.file)
        assertEquals("enc.onnx", m.encoder!!.file)
        assertEquals("ts", m.denoise.input(GraphRoles.TIMESTEPS).name)
        assertEquals("denoised", m.denoise.output(GraphRoles.LATENT).name)
        assertEquals("[batch, 4, 4, 4]", m.denoise.input(GraphRoles.LATENT).describe())
        assertEquals("K >= 1", m.window.toString())
        assertEquals(5, m.files.size)
        val g = m.golden!!
        assertEquals(-1L, g.cases.getValue("generate_fused_8").seed)       // "18446744073709551615" read exactly
        assertEquals(0.6, g.cases.getValue("img2img_fused_8").strength!!, 0.0)
        assertNull(g.cases.getValue("generate_stepwise_4").strength)
        val img = g.file("generate_fused_8", "image")!!
        assertEquals("psnr_db", img.tolerance!!.metric)
        assertEquals(40.0, img.tolerance!!.bar, 0.0)
        assertEquals("onnxruntime", g.runtime["backend"])
        assertEquals(listOf(4, 8), m.storedTimesteps.keys.sorted())
    }

    @Test
    fun schemaV1IsRefusedWithOneLineSayingToReExport() = expectError(
        "manifest.json: bundle schema v1 is no longer supported by this runtime (schema v2); re-export it with lrf-export") {
        it["schema_version"] = TestJson.num("1")
    }

    @Test
    fun schemaVersionTooNewIsRefused() = expectError("newer than this app supports") { it["schema_version"] = TestJson.num("3") }

    @Test
    fun wrongSchemaIsRefused() = expectError("is this an LRF bundle") { it["schema"] = "something-else" }

    @Test
    fun missingFieldNamesThePath() = expectError("manifest.json: latent: missing (required)") { it.remove("latent") }

    @Test
    fun fieldErrorsSayExpectedAndGot() {
        expectError("manifest.json: latent.height: expected int in 1..4096, got \"4\"") { TestJson.obj(it, "latent")["height"] = "4" }
        expectError("manifest.json: latent.width: expected int in 1..4096, got 5000") { TestJson.obj(it, "latent")["width"] = TestJson.num("5000") }
        expectError("manifest.json: sampling.steps: expected int in 1..1000, got 1001") { TestJson.obj(it, "sampling")["steps"] = TestJson.num("1001") }
        expectError("manifest.json: sampling.guidance: expected number in [0.0, 20.0], got 1e39") {
            TestJson.obj(it, "sampling")["guidance"] = TestJson.num("1e39")                 // finite double, infinite float32
        }
        expectError("manifest.json: sampling.mode: expected one of [\"fused\", \"stepwise\"], got \"turbo\"") {
            TestJson.obj(it, "sampling")["mode"] = "turbo"
        }
        expectError("manifest.json: target: expected one of") { it["target"] = "tflite" }
        expectError("manifest.json: model.guidance_distilled: expected true or false, got nothing") {
            TestJson.obj(it, "model").remove("guidance_distilled")
        }
        expectError("manifest.json: classes: expected a list of 1..1000 distinct non-empty strings") {
            TestJson.list(it, "classes")[1] = "airplane"
        }
        expectError("manifest.json: null_class: expected int in 10..10, got 11") { it["null_class"] = TestJson.num("11") }
        expectError("manifest.json: image.height: expected int in 32..32, got 64") { TestJson.obj(it, "image")["height"] = TestJson.num("64") }
        expectError("manifest.json: files.enc.onnx.size: expected int >= 0, got -1") {
            TestJson.obj(it, "files", "enc.onnx")["size"] = TestJson.num("-1")
        }
        expectError("64 lowercase hex digits") { TestJson.obj(it, "files", "enc.onnx")["sha256"] = "ABC" }
    }

    @Test
    fun turboBundlesParse() {
        val m = TestJson.sample()
        TestJson.obj(m, "model")["guidance_distilled"] = true
        assertTrue(parse(m).guidanceDistilled)
    }

    @Test
    fun staticQdqGraphsAreMarkedForQdqFusion() {
        val m = TestJson.sample()
        assertFalse(parse(m).graphs.getValue("decoder").staticQdq)
        TestJson.obj(m, "graphs", "decoder")["quantization"] = mutableMapOf<String, Any?>("method" to "static_qdq")
        TestJson.obj(m, "graphs", "denoise")["quantization"] = mutableMapOf<String, Any?>("method" to "weight_only")
        val g = parse(m).graphs
        assertTrue(g.getValue("decoder").staticQdq)
        assertFalse(g.getValue("denoise").staticQdq)
    }

    @Test
    fun graphFilesMustBeListed() {
        expectError("is not listed in 'files'") { TestJson.obj(it, "graphs", "denoise")["file"] = "other.onnx" }
        expectError("graphs.denoise.external_data[0]: 'a/denoise.onnx.data' is not listed in 'files'") {
            TestJson.obj(it, "graphs", "denoise")["external_data"] = arrayListOf<Any?>("a/denoise.onnx.data")
        }
        expectError("golden.files.image_generate_fused_8.file: 'golden/x.png' is not listed in 'files'") {
            TestJson.obj(it, "golden", "files", "image_generate_fused_8")["file"] = "golden/x.png"
        }
    }

    @Test
    fun pathsStayInsideTheBundle() {
        for (bad in listOf("../denoise.onnx", "a/../../x", "/abs.onnx", "a//b", "./a", "c:x", "a\\b")) {
            expectError("expected a relative path inside the bundle, got \"$bad\"") { TestJson.obj(it, "graphs", "denoise")["file"] = bad }
        }
    }

    @Test
    fun storedTimestepsMustMatchTheScheduler() = expectError("scheduler.timesteps.8[1]: expected 0.875 (section 3 formula") {
        TestJson.list(it, "scheduler", "timesteps", "8")[1] = TestJson.num("0.87")
    }

    @Test
    fun schedulerShiftMustEqualSamplingShift() = expectError("scheduler.shift: expected 1.0 (= sampling.shift), got 3.0") {
        TestJson.obj(it, "scheduler")["shift"] = TestJson.num("3.0")
    }

    @Test
    fun requiredGraphs() {
        expectError("manifest.json: graphs.decoder: missing (required)") { TestJson.obj(it, "graphs").remove("decoder") }
        expectError("manifest.json: graphs.denoise: missing (required)") { TestJson.obj(it, "graphs").remove("denoise") }
        // no encoder: the bundle still generates (editing is refused at edit time)
        val m = TestJson.sample()
        TestJson.obj(m, "graphs").remove("encoder")
        assertNull(parse(m).encoder)
    }

    @Test
    fun rolesAreCheckedNotNames() {
        expectError("graphs.denoise.inputs: expected a tensor with role 'label', got roles [latent, timesteps, class, guidance]") {
            tensor(it, "denoise", "inputs", 2)["role"] = "class"
        }
        expectError("graphs.denoise.inputs 'y' (role label): expected int32 of rank 1, got float32 [batch]") {
            tensor(it, "denoise", "inputs", 2)["dtype"] = "float32"
        }
        expectError("role 'latent' appears twice") { tensor(it, "denoise", "inputs", 1)["role"] = "latent" }
        expectError("graphs.decoder.outputs 'rgb' (role image): expected float32 of rank 4, got uint8") {
            TestJson.obj(it, "image")["format"] = "float_nchw"
        }
        expectError("graphs.encoder.inputs 'pixels' (role image): expected float32 of rank 4, got uint8") {
            TestJson.obj(it, "image")["format"] = "float_nchw"
            TestJson.list(it, "graphs", "decoder", "outputs")[0].let { o ->
                @Suppress("UNCHECKED_CAST") (o as MutableMap<String, Any?>)["dtype"] = "float32"
            }
        }
        expectError("dtype 'float16' is not one of") { tensor(it, "denoise", "inputs", 1)["dtype"] = "float16" }
        expectError("graphs.denoise.inputs 'z_in' (role latent): expected shape [B, 4, 8, 4] (the manifest's latent)") {
            TestJson.obj(it, "latent")["height"] = TestJson.num("8")
            TestJson.obj(it, "image")["height"] = TestJson.num("64")
        }
    }

    @Test
    fun windowIsChecked() {
        expectError("graphs.denoise.window: missing (required)") { TestJson.obj(it, "graphs", "denoise").remove("window") }
        expectError("graphs.denoise.window.min: expected int in 1..") { TestJson.obj(it, "graphs", "denoise", "window")["min"] = TestJson.num("0") }
        expectError("graphs.denoise.window.max: expected int in 2..") {
            TestJson.obj(it, "graphs", "denoise", "window")["min"] = TestJson.num("2")
            TestJson.obj(it, "graphs", "denoise", "window")["max"] = TestJson.num("1")
        }
        expectError("(role timesteps): expected shape [-1] (window.max + 1), got [3]") {
            tensor(it, "denoise", "inputs", 1)["shape"] = arrayListOf<Any?>(TestJson.num("3"))
        }
        val m = TestJson.sample()                                        // a fixed-K file (Core ML, ExecuTorch)
        TestJson.obj(m, "graphs", "denoise")["window"] = linkedMapOf<String, Any?>("min" to TestJson.num("2"), "max" to TestJson.num("2"))
        tensor(m, "denoise", "inputs", 1)["shape"] = arrayListOf<Any?>(TestJson.num("3"))
        assertEquals("K = 2", parse(m).window.toString())
    }

    @Test
    fun goldenEntriesAreChecked() {
        expectError("golden.cases.generate_fused_8.seed: expected a uint64 seed as a decimal string, got 5") {
            TestJson.obj(it, "golden", "cases", "generate_fused_8")["seed"] = TestJson.num("5")
        }
        for (bad in listOf("18446744073709551616", "-1", "007", "", "1e3")) {
            expectError("seed: expected a uint64 seed as a decimal string, got \"$bad\"") {
                TestJson.obj(it, "golden", "cases", "generate_fused_8")["seed"] = bad
            }
        }
        expectError("golden.cases.img2img_fused_8.strength: expected number in [0.0, 1.0]") {
            TestJson.obj(it, "golden", "cases", "img2img_fused_8")["strength"] = TestJson.num("1.5")
        }
        expectError("golden.files.image_generate_fused_8.tolerance: missing (every golden.files entry has") {
            TestJson.obj(it, "golden", "files", "image_generate_fused_8").remove("tolerance")
        }
        expectError("golden.files.image_generate_fused_8.case: expected one of the golden.cases ids") {
            TestJson.obj(it, "golden", "files", "image_generate_fused_8")["case"] = "nope"
        }
        expectError("golden.files.image_generate_fused_8.tolerance.metric: expected one of") {
            TestJson.obj(it, "golden", "files", "image_generate_fused_8", "tolerance")["metric"] = "ssim"
        }
    }

    @Test
    fun theExportersModeSpellingsAreReadToo() {
        // exporter/golden.py names a case's modes in "modes" and the mode of a file in its content
        val j = TestJson.sample()
        val case = TestJson.obj(j, "golden", "cases", "generate_fused_8")
        case.remove("mode")
        case["modes"] = arrayListOf<Any?>("stepwise", "fused")
        TestJson.obj(j, "golden", "files", "image_generate_fused_8")["content"] = "image_fused"
        TestJson.obj(j, "golden", "cases", "generate_stepwise_4").remove("mode")
        val g = Manifest.parse(TestJson.write(j)).golden!!
        assertEquals(Mode.STEPWISE, g.cases.getValue("generate_fused_8").mode)
        assertEquals(Mode.AUTO, g.cases.getValue("generate_stepwise_4").mode)
        val f = g.files.getValue("image_generate_fused_8")
        assertEquals("image", f.content)
        assertEquals(Mode.FUSED, f.mode)
        expectError("golden.files.image_generate_fused_8.content: expected one of") {
            TestJson.obj(it, "golden", "files", "image_generate_fused_8")["content"] = "image_turbo"
        }
    }

    @Test
    fun rngSpecMismatch() = expectError("rng.version: expected int in 1..1, got 2") { TestJson.obj(it, "rng")["version"] = TestJson.num("2") }

    @Test
    fun nonFiniteGuidanceIsNotJson() {
        try {
            Manifest.parse(TestJson.resource("sample_manifest.json").replace("\"guidance\": 3.0, \"shift\"", "\"guidance\": NaN, \"shift\""))
            fail()
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.contains("invalid JSON"))
        }
    }
}
