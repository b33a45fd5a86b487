import CryptoKit
import Foundation

/// Where bundle files come from (mirror of BundleSource.kt). Paths are the manifest's relative,
/// '/'-separated paths.
public protocol BundleSource {
    /// Human-readable location for error messages.
    var description: String { get }
    /// A file URL for a bundle path (Core ML loads models from URLs).
    func url(_ relPath: String) -> URL
    /// The whole file; throws LRFError.notFound if it is missing.
    func readData(_ relPath: String) throws -> Data
}

extension BundleSource {
    public func readText(_ relPath: String) throws -> String {
        guard let s = String(data: try readData(relPath), encoding: .utf8) else {
            throw LRFError.invalid("\(description)/\(relPath) is not UTF-8 text")
        }
        return s
    }
}

/// A bundle folder on disk: inside the app (Bundle.main) or in Documents.
public struct DirectorySource: BundleSource {
    public let root: URL
    public init(root: URL) { self.root = root }

    public var description: String { root.path }

    public func url(_ relPath: String) -> URL { root.appendingPathComponent(relPath) }

    public func readData(_ relPath: String) throws -> Data {
        let u = url(relPath)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: u.path, isDirectory: &isDir), !isDir.boolValue else {
            throw LRFError.notFound("\(description): missing \(relPath)")
        }
        return try Data(contentsOf: u)
    }
}

/// SHA-256 helpers (CryptoKit).
public enum SHA256Hex {
    public static func of(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}

/// Checks every listed file's size and sha256 (mirror of BundleVerifier.kt).
public enum BundleVerifier {
    /// Reads and validates manifest.json, then (if `verify`) checks every listed file.
    public static func load(_ source: BundleSource, verify: Bool = true,
                            onFile: ((Int, Int, String) -> Void)? = nil) throws -> Manifest {
        let text: String
        do { text = try source.readText(Manifest.fileName) } catch LRFError.notFound(_) {
            throw LRFError.notFound("\(source.description) has no \(Manifest.fileName): copy a bundle made by " +
                "`lrf-export` there (see the README)")
        }
        let manifest = try Manifest.parse(text, source: "\(source.description)/\(Manifest.fileName)")
        if verify { try verifyFiles(source, manifest, onFile: onFile) }
        return manifest
    }

    public static func verifyFiles(_ source: BundleSource, _ manifest: Manifest,
                                   onFile: ((Int, Int, String) -> Void)? = nil) throws {
        let entries = manifest.files.values.sorted { $0.path < $1.path }
        for (i, e) in entries.enumerated() {
            onFile?(i, entries.count, e.path)
            let data: Data
            do { data = try source.readData(e.path) } catch LRFError.notFound(_) {
                throw LRFError.notFound("\(source.description) is missing \(e.path) (listed in \(Manifest.fileName)); " +
                    "re-export or re-copy the bundle")
            }
            if Int64(data.count) != e.size {
                throw LRFError.invalid("bundle file \(e.path): size \(data.count) bytes, manifest says \(e.size); " +
                    "the file is corrupt or was replaced: re-export or re-copy the bundle")
            }
            let digest = SHA256Hex.of(data)
            if digest != e.sha256 {
                throw LRFError.invalid("bundle file \(e.path): sha256 mismatch (file \(digest.prefix(16))..., manifest " +
                    "\(e.sha256.prefix(16))...); the file is corrupt or was replaced: re-export or re-copy the bundle")
            }
        }
    }
}
