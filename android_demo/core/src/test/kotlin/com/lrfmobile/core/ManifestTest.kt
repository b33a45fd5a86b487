package com.lrfmobile.core

import org.junit.Assert.assertEquals
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
        }
    }

    @Test
    fun sampleParsesAndEverythingComesFromTheManifest() {
        val m = Manifest.parse(TestJson.resource("sample_manifest.json"))
        assertEquals(1, m.schemaVersion)
        assertEquals("onnx", m.target)
        assertEquals(10, m.classes.size)
        assertEquals("cat", m.classes[3])
        assertEquals(listOf(4, 4, 4), m.latentShape.toList())
        assertEquals(32, m.imageHeight)
        assertEquals(8, m.defaultSteps)
        assertEquals(3.0f, m.defaultGuidance)
        assertEquals(listOf(8), m.fusedSteps)
        // file names are whatever the manifest says (deliberately unusual in the sample)
        assertEquals("a/step.onnx", m.graph(Manifest.STEP).file)
        assertEquals("gen8.onnx", m.fusedGraph(8)!!.file)
        assertNull(m.fusedGraph(50))
        assertEquals(listOf("latent", "t", "label", "guidance"), m.graph("step").inputs.map { it.name })
        assertEquals("[batch, 4, 4, 4]", m.graph("step").inputs[0].describe())
        assertEquals(4, m.files.size)
        assertEquals(-1L, m.golden!!.seed)                 // 2^64 - 1 read exactly from the JSON number
        assertEquals(40.0, m.golden!!.imagePsnrDb!!, 0.0)
    }

    @Test
    fun schemaVersionTooNewIsRefused() = expectError("newer than this app supports") { it["schema_version"] = TestJson.num("2") }

    @Test
    fun wrongSchemaIsRefused() = expectError("is this an LRF bundle") { it["schema"] = "something-else" }

    @Test
    fun missingFieldNamesThePath() = expectError("manifest.json: latent: missing (required)") { it.remove("latent") }

    @Test
    fun graphFileMustBeListed() = expectError("is not listed in 'files'") { TestJson.obj(it, "graphs", "step")["file"] = "other.onnx" }

    @Test
    fun pathTraversalIsRefused() = expectError("must be relative and inside the bundle") {
        TestJson.obj(it, "graphs", "step")["file"] = "../step.onnx"
    }

    @Test
    fun storedTimestepsMustMatchTheScheduler() = expectError("differ from this app's scheduler") {
        TestJson.list(it, "scheduler", "timesteps", "8")[1] = TestJson.num("0.87")
    }

    @Test
    fun shiftIsTakenFromTheScheduler() = expectError("differ from this app's scheduler") {
        TestJson.obj(it, "scheduler")["shift"] = TestJson.num("3.0")    // timesteps no longer match
    }

    @Test
    fun fusedStepsNeedAGraph() = expectError("no graph 'generator_50'") { TestJson.list(it, "fused_steps").add(TestJson.num("50")) }

    @Test
    fun requiredGraphs() = expectError("no 'decoder' graph") { TestJson.obj(it, "graphs").remove("decoder") }

    @Test
    fun unknownDtype() = expectError("dtype 'float16' is not one of") {
        @Suppress("UNCHECKED_CAST")
        val t = (TestJson.list(it, "graphs", "step", "inputs")[1] as MutableMap<String, Any?>)
        t["dtype"] = "float16"
    }

    @Test
    fun roleDtypeChecked() = expectError("(the label) must be int32") {
        @Suppress("UNCHECKED_CAST")
        val t = (TestJson.list(it, "graphs", "step", "inputs")[2] as MutableMap<String, Any?>)
        t["dtype"] = "float32"
    }

    @Test
    fun latentShapeMismatch() = expectError("has shape [batch, 4, 4, 4] but the manifest's latent is [4, 8, 4]") {
        TestJson.obj(it, "latent")["height"] = TestJson.num("8")
    }

    @Test
    fun rngSpecMismatch() = expectError("is not the one this app implements") { TestJson.obj(it, "rng")["version"] = TestJson.num("2") }

    @Test
    fun badSha() = expectError("64 lower-case hex digits") { TestJson.obj(it, "files", "gen8.onnx")["sha256"] = "ABC" }

    @Test
    fun nonFiniteGuidanceIsNotJson() {
        try {
            Manifest.parse(TestJson.resource("sample_manifest.json").replace("\"guidance\": 3.0}", "\"guidance\": NaN}"))
            fail()
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.contains("invalid JSON"))
        }
    }
}
