import CryptoKit
import Foundation

/// Where bundle files come from (mirror of BundleSource.kt). Paths are the manifest's relative,
/// '/'-separated paths. A bundle is untrusted input (it may come over a network): a source only
/// ever opens regular files inside its root.
public protocol BundleSource: Sendable {
    /// Human-readable location for error messages.
    var description: String { get }
    /// A file URL for a bundle path (Core ML compiles models from URLs), contained like every read;
    /// an `.mlpackage` graph is a folder.
    func url(_ relPath: String) throws -> URL
    /// The whole file; throws LRFError.notFound if it is missing.
    func readData(_ relPath: String) throws -> Data
    /// The file in chunks, so a graph is hashed without holding it in memory.
    func readChunks(_ relPath: String, _ body: (Data) throws -> Void) throws
    /// Every entry below the root, sorted: files as "a/b.onnx" (manifest.json included), folders
    /// as "a/". Throws naming the first entry that is neither (a symbolic link, a device, ...).
    func list() throws -> [String]
}

extension BundleSource {
    public func readText(_ relPath: String) throws -> String {
        guard let s = String(data: try readData(relPath), encoding: .utf8) else {
            throw LRFError.invalid("\(description)/\(relPath) is not UTF-8 text")
        }
        return s
    }

    public func readChunks(_ relPath: String, _ body: (Data) throws -> Void) throws {
        try body(try readData(relPath))
    }
}

/// A bundle folder on disk: inside the app (Bundle.main) or in Documents. Every path must resolve
/// to a regular file inside `root`: no component may be a symbolic link, and the file's resolved
/// path must lie under the root's. Refusals never say where a link points.
public struct DirectorySource: BundleSource {
    public let root: URL
    public init(root: URL) { self.root = root }

    public var description: String { root.path }

    /// The root with its own links resolved (the folder the user points at may be a link).
    func realRoot() throws -> URL {
        let r = root.resolvingSymlinksInPath()
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: r.path, isDirectory: &isDir), isDir.boolValue else {
            throw LRFError.notFound("\(description): no such bundle folder")
        }
        return r
    }

    /// The type of the entry itself (lstat: a final symbolic link is not followed).
    static func entryType(_ path: String) -> FileAttributeType? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType
    }

    /// The URL for `relPath`, checked component by component; throws if it is not contained.
    public func resolve(_ relPath: String, allowFolder: Bool = false) throws -> URL {
        let base = try realRoot()
        let parts = relPath.split(separator: "/", omittingEmptySubsequences: false).map { String($0) }
        if parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) || relPath.contains("\\") {
            throw LRFError.invalid("\(description): bundle path '\(relPath)' must be relative, '/'-separated and inside the bundle")
        }
        var u = base
        for part in parts {
            u = u.appendingPathComponent(part)
            guard let type = DirectorySource.entryType(u.path) else { throw LRFError.notFound("\(description): missing \(relPath)") }
            if type == .typeSymbolicLink {
                throw LRFError.invalid("\(description): bundle file '\(relPath)' is (or is inside) a symbolic link; " +
                    "a bundle holds only regular files: re-copy it without links")
            }
        }
        let type = DirectorySource.entryType(u.path)
        guard type == .typeRegular || (allowFolder && type == .typeDirectory) else {
            throw LRFError.notFound("\(description): missing \(relPath)")
        }
        guard u.resolvingSymlinksInPath().path.hasPrefix(base.path + "/") else {
            throw LRFError.invalid("\(description): bundle file '\(relPath)' resolves outside the bundle folder")
        }
        return u
    }

    public func url(_ relPath: String) throws -> URL { try resolve(relPath, allowFolder: true) }

    public func readChunks(_ relPath: String, _ body: (Data) throws -> Void) throws {
        let u = try resolve(relPath)
        let fd = open(u.path, O_RDONLY | O_NOFOLLOW)            // no swap for a link after the check
        guard fd >= 0 else { throw LRFError.notFound("\(description): cannot open \(relPath)") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        while let chunk = try handle.read(upToCount: 1 << 16), !chunk.isEmpty { try body(chunk) }
    }

    public func readData(_ relPath: String) throws -> Data {
        var data = Data()
        try readChunks(relPath) { data.append($0) }
        return data
    }

    public func list() throws -> [String] {
        let base = try realRoot()
        guard let e = FileManager.default.enumerator(atPath: base.path) else {
            throw LRFError.invalid("\(description): cannot list the bundle folder")
        }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            switch DirectorySource.entryType(base.appendingPathComponent(rel).path) {
            case .typeSymbolicLink?:
                throw LRFError.invalid("\(description): bundle file '\(rel)' is a symbolic link; a bundle holds only " +
                    "regular files: re-copy it without links")
            case .typeDirectory?: out.append(rel + "/")
            case .typeRegular?: out.append(rel)
            default: throw LRFError.invalid("\(description): '\(rel)' is not a regular file; a bundle holds only regular files")
            }
        }
        return out.sorted()
    }
}

/// SHA-256 helpers (CryptoKit).
public enum SHA256Hex {
    public static func of(_ data: Data) -> String { hex(SHA256.hash(data: data)) }

    /// The digest and byte count of a bundle file, read in 64 KiB chunks (as Sha256.ofStream in Kotlin).
    public static func of(_ source: BundleSource, _ relPath: String) throws -> (hex: String, size: Int64) {
        var hasher = SHA256()
        var size: Int64 = 0
        try source.readChunks(relPath) { chunk in
            hasher.update(data: chunk)
            size += Int64(chunk.count)
        }
        return (hex(hasher.finalize()), size)
    }

    static func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }
}

/// Checks containment and every listed file's size and sha256 (mirror of BundleVerifier.kt).
public enum BundleVerifier {
    /// Reads and validates manifest.json, then (if `verify`) checks every file.
    public static func load(_ source: BundleSource, verify: Bool = true,
                            onFile: ((Int, Int, String) -> Void)? = nil) throws -> Manifest {
        let data: Data
        do { data = try source.readData(Manifest.fileName) } catch LRFError.notFound(_) {
            throw LRFError.notFound("\(source.description) has no \(Manifest.fileName): copy a bundle made by " +
                "`lrf-export` there (see the README)")
        }
        let manifest = try Manifest.parse(data, source: "\(source.description)/\(Manifest.fileName)")
        if verify { try verifyFiles(source, manifest, onFile: onFile) }
        return manifest
    }

    /// Throws naming the first bad file: one the manifest does not list (checked first, before
    /// any hashing), a link or special file, a missing one, or one whose size or sha256 differs.
    public static func verifyFiles(_ source: BundleSource, _ manifest: Manifest,
                                   onFile: ((Int, Int, String) -> Void)? = nil) throws {
        try checkNothingUnlisted(source, manifest)
        let entries = manifest.files.values.sorted { $0.path < $1.path }
        for (i, e) in entries.enumerated() {
            onFile?(i, entries.count, e.path)
            let hashed: (hex: String, size: Int64)
            do { hashed = try SHA256Hex.of(source, e.path) } catch LRFError.notFound(_) {
                throw LRFError.notFound("\(source.description) is missing \(e.path) (listed in \(Manifest.fileName)); " +
                    "re-export or re-copy the bundle")
            }
            let (digest, size) = hashed
            if size != e.size {
                throw LRFError.invalid("bundle file \(e.path): size \(size) bytes, manifest says \(e.size); " +
                    "the file is corrupt or was replaced: re-export or re-copy the bundle")
            }
            if digest != e.sha256 {
                throw LRFError.invalid("bundle file \(e.path): sha256 mismatch (file \(digest.prefix(16))..., manifest " +
                    "\(e.sha256.prefix(16))...); the file is corrupt or was replaced: re-export or re-copy the bundle")
            }
        }
    }

    /// A bundle holds exactly the files its manifest lists, manifest.json and the folders on their
    /// paths (runtime/BUNDLE.md 2.3): anything else (an ONNX external-data file the checksums never
    /// covered, an empty folder, a .DS_Store) is refused by name.
    public static func checkNothingUnlisted(_ source: BundleSource, _ manifest: Manifest) throws {
        let unlisted = try source.list().filter { e in
            e.hasSuffix("/") ? !manifest.files.keys.contains(where: { $0.hasPrefix(e) })
                : e != Manifest.fileName && manifest.files[e] == nil
        }
        if let first = unlisted.first {
            throw LRFError.invalid("\(source.description): bundle file '\(first)' is not listed in \(Manifest.fileName)" +
                (unlisted.count > 1 ? " (and \(unlisted.count - 1) more)" : "") +
                "; a bundle holds only the files its manifest lists: remove it or re-export the bundle")
        }
    }
}
