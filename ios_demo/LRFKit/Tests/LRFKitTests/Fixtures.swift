import Foundation
import XCTest
@testable import LRFKit

/// The committed fixtures (copies of android_demo/core/src/test/resources, made by Python;
/// tests/test_cross_language.py keeps the copies identical).
enum Fixtures {
    static func text(_ name: String) throws -> String {
        let parts = name.split(separator: ".")
        guard let url = Bundle.module.url(forResource: String(parts[0]), withExtension: String(parts[1]), subdirectory: "Resources") else {
            throw LRFError.notFound("test resource \(name) is not in the bundle")
        }
        return try String(contentsOf: url, encoding: .utf8)
    }

    static func golden() throws -> JSONObj { try JSONObj.parse(try text("golden_vectors.json"), source: "golden_vectors.json") }

    static func floatBits(_ hex: [String]) -> [Float] { hex.map { Float(bitPattern: UInt32($0, radix: 16)!) } }

    static func bitsOf(_ values: [Float]) -> [String] { values.map { String(format: "%08x", $0.bitPattern) } }

    static func hex16(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// Serialises parsed JSON back to text (to edit the sample manifest in tests).
    static func write(_ v: Any?) -> String {
        switch v {
        case nil: return "null"
        case let s as String:
            let escaped = s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
            return "\"\(escaped)\""
        case let b as Bool: return b ? "true" : "false"
        case let n as JSONNumber: return n.text
        case let o as JSON.Object: return "{" + o.keys.map { write($0) + ":" + write(o.values[$0] ?? nil) }.joined(separator: ",") + "}"
        case let l as [Any?]: return "[" + l.map { write($0) }.joined(separator: ",") + "]"
        default: fatalError("cannot write \(String(describing: v))")
        }
    }

    /// The sample manifest as an editable JSON.Object.
    static func sample() throws -> JSON.Object { try JSON.parse(try text("sample_manifest.json")) as! JSON.Object }
}

/// In-place editing of a JSON.Object tree along a key path.
extension JSON.Object {
    subscript(path path: [String]) -> Any? {
        get {
            var cur: Any? = self
            for p in path { cur = (cur as? JSON.Object)?.values[p] ?? nil }
            return cur
        }
        set {
            if path.count == 1 {
                if !keys.contains(path[0]) { keys.append(path[0]) }
                values[path[0]] = .some(newValue)
                return
            }
            var child = values[path[0]]! as! JSON.Object
            child[path: Array(path.dropFirst())] = newValue
            values[path[0]] = .some(child)
        }
    }

    mutating func remove(_ key: String) {
        keys.removeAll { $0 == key }
        values.removeValue(forKey: key)
    }
}

func XCTAssertThrowsMessage(_ fragment: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected an error containing '\(fragment)'", file: file, line: line)
    } catch {
        XCTAssertTrue("\(error)".contains(fragment), "'\(error)' should contain '\(fragment)'", file: file, line: line)
    }
}
