package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
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

    /** The message of what loading [dir] throws, which must be a [T]. */
    private inline fun <reified T : Exception> loadError(dir: File): String =
        thrownBy<T> { BundleVerifier.load(DirectorySource(dir)) }.message!!

    /** Loading [dir] must throw a [T] whose message contains [fragment]. */
    private inline fun <reified T : Exception> expectLoadFails(dir: File, fragment: String) =
        assertThrowsContaining<T>(fragment) { BundleVerifier.load(DirectorySource(dir)) }

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
        val f = File(dir, "a/denoise.onnx")
        f.writeBytes(f.readBytes().also { it[0] = (it[0] + 1).toByte() })    // same size, new content
        val msg = loadError<IllegalArgumentException>(dir)
        assertTrue(msg, msg.startsWith("bundle file a/denoise.onnx: sha256 mismatch"))
    }

    @Test
    fun truncatedFileIsNamed() {
        val dir = makeBundle()
        File(dir, "enc.onnx").writeBytes(ByteArray(2))
        val msg = loadError<IllegalArgumentException>(dir)
        assertTrue(msg, msg.startsWith("bundle file enc.onnx: size 2 bytes"))
    }

    @Test
    fun missingFileAndMissingManifest() {
        val dir = makeBundle()
        File(dir, "golden/timesteps_generate_fused_8.f32").delete()
        expectLoadFails<FileNotFoundException>(dir, "is missing golden/timesteps_generate_fused_8.f32")
        File(dir, Manifest.FILE_NAME).delete()
        expectLoadFails<FileNotFoundException>(dir, "has no manifest.json")
    }

    @Test
    fun verifyCanBeSkipped() {
        val dir = makeBundle()
        File(dir, "enc.onnx").writeBytes(ByteArray(2))
        assertEquals(8, BundleVerifier.load(DirectorySource(dir), verify = false).defaultSteps)
    }

    // --- containment (issue 14): tampered bundles built here, in a temp dir -----------------

    private fun expectRefused(dir: File, fragment: String) = expectLoadFails<IllegalArgumentException>(dir, fragment)

    /** A file outside the bundle, with the same bytes a listed file has (so only containment can catch it). */
    private fun outsideCopy(dir: File, rel: String): File {
        val outside = Files.createTempDirectory("lrf-outside").toFile()
        outside.deleteOnExit()
        return File(outside, "secret").also { it.writeBytes(File(dir, rel).readBytes()) }
    }

    @Test
    fun unlistedFileIsRefusedByName() {
        val dir = makeBundle()
        File(dir, "a/denoise.onnx.data").writeBytes(ByteArray(16))           // e.g. ONNX external data
        expectRefused(dir, "bundle file 'a/denoise.onnx.data' is not listed in manifest.json; a bundle holds only")
        File(dir, "zz.txt").writeText("x")
        expectRefused(dir, "'a/denoise.onnx.data' is not listed in manifest.json (and 1 more)")
    }

    @Test
    fun symlinkedGraphIsRefusedWithoutSayingWhereItPoints() {
        val dir = makeBundle()
        val target = outsideCopy(dir, "a/denoise.onnx")
        File(dir, "a/denoise.onnx").delete()
        Files.createSymbolicLink(File(dir, "a/denoise.onnx").toPath(), target.toPath())
        val msg = loadError<IllegalArgumentException>(dir)
        assertTrue(msg, msg.contains("bundle file 'a/denoise.onnx' is a symbolic link"))
        assertFalse(msg, msg.contains(target.parent))
        // and the source never opens it, even without the listing
        assertThrowsContaining<IllegalArgumentException>("symbolic link") { DirectorySource(dir).open("a/denoise.onnx") }
    }

    @Test
    fun symlinkedGoldenFolderIsRefused() {
        val dir = makeBundle()
        val outside = Files.createTempDirectory("lrf-outside-golden").toFile()
        File(dir, "golden").renameTo(File(outside, "golden"))
        Files.createSymbolicLink(File(dir, "golden").toPath(), File(outside, "golden").toPath())
        expectRefused(dir, "bundle file 'golden' is a symbolic link")
        assertThrowsContaining<IllegalArgumentException>("'golden/timesteps_generate_fused_8.f32' is (or is inside) a symbolic link") {
            DirectorySource(dir).readBytes("golden/timesteps_generate_fused_8.f32")
        }
    }

    @Test
    fun symlinkedManifestIsRefused() {
        val dir = makeBundle()
        val target = outsideCopy(dir, Manifest.FILE_NAME)
        File(dir, Manifest.FILE_NAME).delete()
        Files.createSymbolicLink(File(dir, Manifest.FILE_NAME).toPath(), target.toPath())
        expectRefused(dir, "bundle file 'manifest.json' is (or is inside) a symbolic link")
    }

    @Test
    fun symlinkedBundleRootIsFollowedOnce() {
        // the folder the user points at may itself be a link; everything inside must be real
        val dir = makeBundle()
        val link = File(Files.createTempDirectory("lrf-root-link").toFile(), "bundle")
        Files.createSymbolicLink(link.toPath(), dir.toPath())
        assertEquals(8, BundleVerifier.load(DirectorySource(link)).defaultSteps)
    }

    @Test
    fun badRelativePathsAreRefusedByTheSource() {
        val dir = makeBundle()
        for (bad in listOf("../x", "a/../../x", "/etc/passwd", "a//step.onnx", "./manifest.json")) {
            try {
                DirectorySource(dir).open(bad); fail(bad)
            } catch (e: IllegalArgumentException) {
                assertTrue(e.message!!, e.message!!.contains("must be relative"))
            }
        }
    }

    @Test
    fun listingIsSortedAndComplete() {
        val dir = makeBundle()
        val m = BundleVerifier.load(DirectorySource(dir))
        assertEquals((m.files.keys + Manifest.FILE_NAME + "a/" + "golden/").sorted(), DirectorySource(dir).list())
    }

    @Test
    fun emptyFolderAndDsStoreAreRefused() {
        val dir = makeBundle()
        File(dir, "golden/.DS_Store").writeBytes(ByteArray(4))
        expectRefused(dir, "bundle file 'golden/.DS_Store' is not listed in manifest.json")
        File(dir, "golden/.DS_Store").delete()
        File(dir, "cache/x").mkdirs()
        expectRefused(dir, "bundle file 'cache/' is not listed in manifest.json (and 1 more)")
    }
}
