package com.lrfmobile.core

import java.io.File
import java.io.FileNotFoundException
import java.io.IOException
import java.io.InputStream
import java.nio.file.FileVisitResult
import java.nio.file.Files
import java.nio.file.LinkOption
import java.nio.file.Path
import java.nio.file.SimpleFileVisitor
import java.nio.file.attribute.BasicFileAttributes

/**
 * Where bundle files come from: a folder on disk ([DirectorySource]) or, on Android, the APK's
 * assets. Paths are the manifest's relative, '/'-separated paths. A bundle is untrusted input
 * (it may come over a network): a source only ever opens regular files inside its root.
 */
interface BundleSource {
    /** Human-readable location for error messages (e.g. "assets/lrf"). */
    val description: String

    /** Opens a bundle file; throws FileNotFoundException if it is missing. */
    fun open(relPath: String): InputStream

    /**
     * Every entry under the root as a relative '/'-separated path, sorted: files (`manifest.json`
     * included) as "a/b.onnx", folders with a trailing slash ("a/"). Throws
     * IllegalArgumentException naming the first entry that is neither (a symbolic link, a
     * device, ...).
     */
    fun list(): List<String>

    fun readBytes(relPath: String): ByteArray = open(relPath).use { it.readBytes() }

    fun readText(relPath: String): String = String(readBytes(relPath), Charsets.UTF_8)
}

/**
 * A bundle folder on the file system (JVM tests, adb push, a downloaded bundle). Every path must
 * resolve to a regular file inside [root]: no component may be a symbolic link, and the file's
 * canonical path must lie under the root's. Refusals never say where a link points.
 */
class DirectorySource(val root: File) : BundleSource {
    override val description: String get() = root.path

    private fun realRoot(): Path = try { root.toPath().toRealPath() } catch (e: IOException) {
        throw FileNotFoundException("$description: no such bundle folder")
    }

    /** The file for [relPath], checked component by component; throws if it is not contained. */
    fun resolve(relPath: String): Path {
        val base = realRoot()
        var p = base
        val parts = relPath.split('/')
        require(parts.none { it.isEmpty() || it == "." || it == ".." || it.contains('\\') }) {
            "$description: bundle path '$relPath' must be relative, '/'-separated and inside the bundle"
        }
        for (part in parts) {
            p = p.resolve(part)
            if (Files.isSymbolicLink(p)) throw IllegalArgumentException("$description: bundle file '$relPath' is " +
                "(or is inside) a symbolic link; a bundle holds only regular files: re-copy it without links")
        }
        if (!Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS)) throw FileNotFoundException("$description: missing $relPath")
        require(p.toRealPath().startsWith(base)) { "$description: bundle file '$relPath' resolves outside the bundle folder" }
        return p
    }

    override fun open(relPath: String): InputStream =
        Files.newInputStream(resolve(relPath), LinkOption.NOFOLLOW_LINKS)   // O_NOFOLLOW: no swap after the check

    override fun list(): List<String> {
        val base = realRoot()
        val out = ArrayList<String>()
        Files.walkFileTree(base, object : SimpleFileVisitor<Path>() {      // never follows links
            override fun preVisitDirectory(dir: Path, attrs: BasicFileAttributes): FileVisitResult {
                if (dir != base) out.add(base.relativize(dir).joinToString("/") + "/")
                return FileVisitResult.CONTINUE
            }

            override fun visitFile(file: Path, attrs: BasicFileAttributes): FileVisitResult {
                val rel = base.relativize(file).joinToString("/")
                if (attrs.isSymbolicLink) throw IllegalArgumentException("$description: bundle file '$rel' is a " +
                    "symbolic link; a bundle holds only regular files: re-copy it without links")
                if (!attrs.isRegularFile) throw IllegalArgumentException("$description: '$rel' is not a regular file; " +
                    "a bundle holds only regular files")
                out.add(rel)
                return FileVisitResult.CONTINUE
            }

            override fun visitFileFailed(file: Path, exc: IOException): FileVisitResult {
                throw IllegalArgumentException("$description: cannot read '${base.relativize(file).joinToString("/")}' in the bundle")
            }
        })
        out.sort()
        return out
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

    /**
     * Throws FileNotFoundException / IllegalArgumentException naming the first bad file: one
     * the manifest does not list (checked first, before any hashing), a link or special file,
     * a missing one, or one whose size or sha256 differs.
     */
    fun verifyFiles(source: BundleSource, manifest: Manifest, onFile: ((Int, Int, String) -> Unit)? = null) {
        checkNothingUnlisted(source, manifest)
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

    /**
     * A bundle holds exactly the files its manifest lists, manifest.json and the folders on
     * their paths (runtime/BUNDLE.md 2.3): anything else, such as an ONNX external-data file the
     * checksums never covered, an empty folder or a .DS_Store, is refused by name.
     */
    fun checkNothingUnlisted(source: BundleSource, manifest: Manifest) {
        val unlisted = source.list().filter { e ->
            if (e.endsWith("/")) manifest.files.keys.none { it.startsWith(e) }
            else e != Manifest.FILE_NAME && e !in manifest.files
        }
        if (unlisted.isNotEmpty()) throw IllegalArgumentException("${source.description}: bundle file '${unlisted[0]}' " +
            "is not listed in ${Manifest.FILE_NAME}" + (if (unlisted.size > 1) " (and ${unlisted.size - 1} more)" else "") +
            "; a bundle holds only the files its manifest lists: remove it or re-export the bundle")
    }
}
