package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.io.File
import java.io.FileNotFoundException
import java.nio.file.Files

class BundleVerifierTest {
    /** A bundle folder whose files and checksums agree with its manifest. */
    private fun makeBundle(): File {
        val dir = Files.createTempDirectory("lrf-bundle-test").toFile()
        dir.deleteOnExit()
        val m = TestJson.sample()
        val files = TestJson.obj(m, "files")
        for (rel in files.keys) {
            val f = File(dir, rel)
            f.parentFile.mkdirs()
            val bytes = ("content of $rel").toByteArray(Charsets.UTF_8)
            f.writeBytes(bytes)
            files[rel] = linkedMapOf<String, Any?>("size" to JsonNumber(bytes.size.toString()), "sha256" to Sha256.ofBytes(bytes))
        }
        File(dir, Manifest.FILE_NAME).writeText(TestJson.write(m))
        return dir
    }

    @Test
    fun verifiesEveryListedFile() {
        val dir = makeBundle()
        val seen = ArrayList<String>()
        val m = BundleVerifier.load(DirectorySource(dir)) { _, _, path -> seen.add(path) }
        assertEquals(m.files.keys.sorted(), seen)
    }

    @Test
    fun corruptFileIsNamed() {
        val dir = makeBundle()
        val f = File(dir, "a/step.onnx")
        f.writeBytes(f.readBytes().also { it[0] = (it[0] + 1).toByte() })    // same size, new content
        try {
            BundleVerifier.load(DirectorySource(dir)); fail()
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.startsWith("bundle file a/step.onnx: sha256 mismatch"))
        }
    }

    @Test
    fun truncatedFileIsNamed() {
        val dir = makeBundle()
        File(dir, "gen8.onnx").writeBytes(ByteArray(2))
        try {
            BundleVerifier.load(DirectorySource(dir)); fail()
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.startsWith("bundle file gen8.onnx: size 2 bytes"))
        }
    }

    @Test
    fun missingFileAndMissingManifest() {
        val dir = makeBundle()
        File(dir, "golden/timesteps.f32").delete()
        try {
            BundleVerifier.load(DirectorySource(dir)); fail()
        } catch (e: FileNotFoundException) {
            assertTrue(e.message!!, e.message!!.contains("is missing golden/timesteps.f32"))
        }
        File(dir, Manifest.FILE_NAME).delete()
        try {
            BundleVerifier.load(DirectorySource(dir)); fail()
        } catch (e: FileNotFoundException) {
            assertTrue(e.message!!, e.message!!.contains("has no manifest.json"))
        }
    }

    @Test
    fun verifyCanBeSkipped() {
        val dir = makeBundle()
        File(dir, "gen8.onnx").writeBytes(ByteArray(2))
        assertEquals(8, BundleVerifier.load(DirectorySource(dir), verify = false).defaultSteps)
    }
}
