import Foundation
import XCTest
@testable import LRFKit

/// The committed fixtures (copies of android_demo/core/src/test/resources, made by Python;
/// tests/test_cross_language.py keeps the copies identical).
enum Fixtures {
    static func data(_ name: String) throws -> Data {
        let parts = name.split(separator: ".")
        guard let url = Bundle.module.url(forResource: String(parts[0]), withExtension: String(parts[1]), subdirectory: "Resources") else {
            throw LRFError.notFound("test resource \(name) is not in the bundle")
        }
        return try Data(contentsOf: url)
    }

    static func text(_ name: String) throws -> String { String(decoding: try data(name), as: UTF8.self) }

    static func golden() throws -> JSONObj { try JSONObj.parse(try data("golden_vectors.json"), source: "golden_vectors.json") }

    static func floatBits(_ hex: [String]) -> [Float] { hex.map { Float(bitPattern: UInt32($0, radix: 16)!) } }

    static func bitsOf(_ values: [Float]) -> [String] { values.map { String(format: "%08x", $0.bitPattern) } }

    static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// The sample manifest as an editable dictionary.
    static func sample() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: try data("sample_manifest.json")) as! [String: Any]
    }

    static func write(_ d: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: d), as: UTF8.self)
    }

    static func manifest() throws -> Manifest { try Manifest.parse(try data("sample_manifest.json")) }

    /// The sample with `edit` applied, parsed.
    static func manifest(_ edit: (inout [String: Any]) -> Void) throws -> Manifest {
        var m = try sample()
        edit(&m)
        return try Manifest.parse(try write(m))
    }

    /// Raw little-endian float32 bytes.
    static func f32(_ values: [Float]) -> Data {
        var d = Data()
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        return d
    }
}

/// In-place editing of a nested JSON dictionary along a key path (nil removes the key).
extension Dictionary where Key == String, Value == Any {
    subscript(path path: [String]) -> Any? {
        get {
            var cur: Any? = self
            for p in path { cur = (cur as? [String: Any])?[p] }
            return cur
        }
        set {
            guard let first = path.first else { return }
            if path.count == 1 {
                self[first] = newValue
                return
            }
            var child = self[first] as? [String: Any] ?? [:]
            child[path: Array(path.dropFirst())] = newValue
            self[first] = child
        }
    }

    /// Sets key `key` of the `index`-th object of the list at `path`.
    mutating func setInList(_ path: [String], _ index: Int, _ key: String, _ value: Any?) {
        var list = self[path: path] as! [Any]
        var item = list[index] as! [String: Any]
        item[key] = value
        list[index] = item
        self[path: path] = list
    }
}

/// A GraphSession/Engine whose graphs are simple known functions (mirror of FakeEngine.kt), so
/// the loops around them can be checked by hand. Tensors are found by role via the manifest's names.
///  - denoise: for each step i of its window tau, z += (tau[i+1] - tau[i]) * v, v = z * (1 + label) + g;
///  - encoder: z[c, y, x] = mean of channel c % 3 over pixel block (y, x) / 127.5 - 1;
///  - decoder: pixel (y, x) channel k = clamp(floor(128 + 40 * z[k % C, y / 8, x / 8] + 0.5)), uint8 NHWC.
/// Tests run serially, so the recorded calls need no lock.
final class FakeEngine: Engine, @unchecked Sendable {
    let manifest: Manifest
    let outputShape: [Int]?
    var calls: [String] = []
    var closed = 0

    init(_ manifest: Manifest, outputShape: [Int]? = nil) {
        self.manifest = manifest
        self.outputShape = outputShape
    }

    static func denoise(_ z0: [Float], _ tau: [Float], label: Int, g: Float) throws -> [Float] {
        var z = z0
        for i in 0..<(tau.count - 1) {
            let v = z.map { $0 * Float(1 + label) + g }
            try Schedule.eulerStep(&z, v, t: tau[i], tNext: tau[i + 1])
        }
        return z
    }

    final class Session: GraphSession {
        let engine: FakeEngine
        let graph: GraphSpec
        init(_ engine: FakeEngine, _ graph: GraphSpec) { self.engine = engine; self.graph = graph }

        func run(_ inputs: [String: Tensor]) throws -> [String: Tensor] {
            XCTAssertEqual(Set(inputs.keys), Set(graph.inputs.map { $0.name }))       // names come from the manifest
            func byRole(_ role: String) throws -> Tensor {
                let name = try graph.input(role).name
                return inputs[name]!
            }
            let out = graph.outputs[0].name
            let m = engine.manifest
            let c = m.latentShape[0], h = m.latentShape[1], w = m.latentShape[2]
            switch graph.name {
            case Manifest.denoise:
                let tau = try byRole(GraphRoles.timesteps).floats!
                engine.calls.append("denoise:\(tau.count - 1)")
                let z = try FakeEngine.denoise(try byRole(GraphRoles.latent).floats!, tau, label: Int(try byRole(GraphRoles.label).ints![0]),
                                               g: try byRole(GraphRoles.guidance).floats![0])
                if let shape = engine.outputShape { return [out: try Tensor.f32(shape, [Float](repeating: 0, count: shape.reduce(1, *)))] }
                return [out: try Tensor.f32(try byRole(GraphRoles.latent).shape, z)]
            case Manifest.encoder:
                engine.calls.append(graph.name)
                let img = try byRole(GraphRoles.image).bytes!
                let iw = 8 * w
                let z: [Float] = (0..<(c * h * w)).map { k in
                    let ch = k / (h * w) % 3, y = k / w % h, x = k % w
                    var sum = 0
                    for dy in 0..<8 { for dx in 0..<8 { sum += Int(img[((8 * y + dy) * iw + 8 * x + dx) * 3 + ch]) } }
                    return Float(sum) / 64 / 127.5 - 1
                }
                return [out: try Tensor.f32([1, c, h, w], z)]
            default:
                engine.calls.append(graph.name)
                let z = try byRole(GraphRoles.latent).floats!
                let ih = m.imageHeight, iw = m.imageWidth
                let px: [UInt8] = (0..<(ih * iw * 3)).map { k in
                    let ch = k % 3, x = k / 3 % iw, y = k / 3 / iw
                    let v = (128 + 40 * z[(ch % c) * h * w + (y / 8) * w + x / 8] + 0.5).rounded(.down)
                    return UInt8(Swift.max(0, Swift.min(255, v)))
                }
                return [out: try Tensor.u8([1, ih, iw, 3], px)]
            }
        }

        func close() { engine.closed += 1 }
    }

    func open(_ graph: GraphSpec) throws -> GraphSession { Session(self, graph) }
}

/// Bundle files held in memory, by relative path.
struct MemorySource: BundleSource {
    let files: [String: Data]
    var description: String { "memory" }
    func url(_ relPath: String) throws -> URL { URL(fileURLWithPath: "/nonexistent/" + relPath) }
    func readData(_ relPath: String) throws -> Data {
        guard let d = files[relPath] else { throw LRFError.notFound(relPath) }
        return d
    }
    func list() throws -> [String] { files.keys.sorted() }
}

func XCTAssertThrowsMessage(_ fragment: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected an error containing '\(fragment)'", file: file, line: line)
    } catch {
        XCTAssertTrue("\(error)".contains(fragment), "'\(error)' should contain '\(fragment)'", file: file, line: line)
    }
}
