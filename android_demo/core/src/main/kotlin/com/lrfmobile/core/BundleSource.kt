package com.lrfmobile.core

import java.io.File
import java.io.FileNotFoundException
import java.io.InputStream

/**
 * Where bundle files come from: a folder on disk ([DirectorySource]) or, on Android, the APK's
 * assets. Paths are the manifest's relative, '/'-separated paths.
 */
interface BundleSource {
    /** Human-readable location for error messages (e.g. "assets/lrf"). */
    val description: String

    /** Opens a bundle file; throws FileNotFoundException if it is missing. */
    fun open(relPath: String): InputStream

    fun readBytes(relPath: String): ByteArray = open(relPath).use { it.readBytes() }

    fun readText(relPath: String): String = String(readBytes(relPath), Charsets.UTF_8)
}

/** A bundle folder on the file system (JVM tests, the iOS-style "Documents" copy, adb push). */
class DirectorySource(val root: File) : BundleSource {
    override val description: String get() = root.path

    override fun open(relPath: String): InputStream {
        val f = File(root, relPath)
        if (!f.isFile) throw FileNotFoundException("$description: missing $relPath")
        return f.inputStream()
    }
}

/** Checks every listed file's size and sha256, as runtime/manifest.py `verify_files` does. */
object BundleVerifier {
    /**
     * Reads and validates `manifest.json` from [source], then (if [verify]) checks every listed
     * file. [onFile] is told (index, count, path) before each file so a UI can show progress.
     */
    fun load(source: BundleSource, verify: Boolean = true, onFile: ((Int, Int, String) -> Unit)? = null): Manifest {
        val text = try { source.readText(Manifest.FILE_NAME) } catch (e: FileNotFoundException) {
            throw FileNotFoundException("${source.description} has no ${Manifest.FILE_NAME}: copy a bundle " +
                "made by `lrf-export` there (see the README)")
        }
        val manifest = Manifest.parse(text, "${source.description}/${Manifest.FILE_NAME}")
        if (verify) verifyFiles(source, manifest, onFile)
        return manifest
    }

    /** Throws FileNotFoundException / IllegalArgumentException naming the first bad file. */
    fun verifyFiles(source: BundleSource, manifest: Manifest, onFile: ((Int, Int, String) -> Unit)? = null) {
        val entries = manifest.files.values.sortedBy { it.path }
        for ((i, e) in entries.withIndex()) {
            onFile?.invoke(i, entries.size, e.path)
            val (digest, size) = try { source.open(e.path).use { Sha256.ofStream(it) } } catch (x: FileNotFoundException) {
                throw FileNotFoundException("${source.description} is missing ${e.path} (listed in " +
                    "${Manifest.FILE_NAME}); re-export or re-copy the bundle")
            }
            if (size != e.size) throw IllegalArgumentException("bundle file ${e.path}: size $size bytes, manifest " +
                "says ${e.size}; the file is corrupt or was replaced: re-export or re-copy the bundle")
            if (digest != e.sha256) throw IllegalArgumentException("bundle file ${e.path}: sha256 mismatch (file " +
                "${digest.substring(0, 16)}..., manifest ${e.sha256.substring(0, 16)}...); the file is corrupt " +
                "or was replaced: re-export or re-copy the bundle")
        }
    }
}
