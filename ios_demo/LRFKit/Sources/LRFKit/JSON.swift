import Foundation

/// Typed access to JSON parsed by Foundation's `JSONSerialization`, with one-line errors that name
/// the field path in the form of runtime/BUNDLE.md 2.4 (`manifest.json: latent.height: expected
/// int in 1..4096, got "4"`). Mirror of JsonObj in Json.kt (the plain-JVM Kotlin core keeps a
/// small parser of its own, having no org.json). Bundles write uint64 seeds as JSON strings, so
/// the platform parser loses nothing a bundle needs: every other number fits a Double exactly or
/// is a float32 value written as its shortest round-trip decimal.
public struct JSONObj {
    public let dict: [String: Any]
    public let path: String
    public let source: String

    /// Parses `data` and requires an object at the root; `source` names the file in errors.
    public static func parse(_ data: Data, source: String) throws -> JSONObj {
        let root: Any
        do {
            root = try JSONSerialization.jsonObject(with: data, options: [])
        } catch {
            throw LRFError.invalid("\(source): invalid JSON (\((error as NSError).localizedDescription))")
        }
        guard let d = root as? [String: Any] else { throw LRFError.invalid("\(source): expected a JSON object at the root") }
        return JSONObj(dict: d, path: "", source: source)
    }

    public static func parse(_ text: String, source: String) throws -> JSONObj {
        try parse(Data(text.utf8), source: source)
    }

    public func fail(_ key: String?, _ why: String) -> LRFError {
        let whereText = key.map { path.isEmpty ? $0 : "\(path).\($0)" } ?? path
        return .invalid("\(source): \(whereText.isEmpty ? "<root>" : whereText): \(why)")
    }

    /// `<source>: <path>: expected <what>, got <value>`.
    public func expected(_ key: String?, _ what: String, _ got: Any?) -> LRFError {
        fail(key, "expected \(what), got \(JSONObj.show(got))")
    }

    /// The keys in sorted order (JSONSerialization keeps no document order).
    public var keys: [String] { dict.keys.sorted() }

    /// The value at `key`; nil when absent or JSON null.
    public func raw(_ key: String) -> Any? {
        guard let v = dict[key], !(v is NSNull) else { return nil }
        return v
    }

    /// Present and not null.
    public func has(_ key: String) -> Bool { raw(key) != nil }

    /// Present, even if null (every golden.files entry must have all its keys).
    public func contains(_ key: String) -> Bool { dict[key] != nil }

    func need(_ key: String) throws -> Any {
        guard let v = raw(key) else { throw fail(key, "missing (required)") }
        return v
    }

    func join(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// A JSON number, never a boolean (JSONSerialization gives both as NSNumber).
    static func number(_ v: Any?) -> NSNumber? {
        guard let n = v as? NSNumber, CFGetTypeID(n as CFTypeRef) != CFBooleanGetTypeID() else { return nil }
        return n
    }

    static func boolean(_ v: Any?) -> Bool? {
        guard let n = v as? NSNumber, CFGetTypeID(n as CFTypeRef) == CFBooleanGetTypeID() else { return nil }
        return n.boolValue
    }

    /// A value as short text for messages (strings quoted, long values cut).
    static func show(_ v: Any?) -> String {
        let text: String
        switch v {
        case nil, is NSNull: text = "nothing"
        case let s as String: text = "\"\(s)\""
        case is [String: Any]: text = "an object"
        case let l as [Any]: text = "[" + l.map { show($0) }.joined(separator: ", ") + "]"
        default:
            if let b = boolean(v) { text = b ? "true" : "false" } else if let n = number(v) { text = n.stringValue } else { text = "\(v!)" }
        }
        return text.count <= 60 ? text : String(text.prefix(57)) + "..."
    }

    public func obj(_ key: String) throws -> JSONObj {
        guard let o = try need(key) as? [String: Any] else { throw fail(key, "expected an object") }
        return JSONObj(dict: o, path: join(key), source: source)
    }

    public func list(_ key: String) throws -> [Any] {
        guard let l = try need(key) as? [Any] else { throw fail(key, "expected a list") }
        return l
    }

    public func objList(_ key: String) throws -> [JSONObj] {
        let l = try list(key)
        return try l.indices.map { (i: Int) throws -> JSONObj in
            let v = l[i]
            guard let o = v as? [String: Any] else { throw fail("\(key)[\(i)]", "expected an object") }
            return JSONObj(dict: o, path: "\(join(key))[\(i)]", source: source)
        }
    }

    public func string(_ key: String) throws -> String {
        guard let s = try need(key) as? String else { throw fail(key, "expected a string") }
        return s
    }

    public func nonEmptyString(_ key: String) throws -> String {
        let v = try need(key)
        guard let s = v as? String, !s.isEmpty else { throw expected(key, "a non-empty string", v) }
        return s
    }

    public func bool(_ key: String) throws -> Bool {
        let v = raw(key)
        guard let b = JSONObj.boolean(v) else { throw expected(key, "true or false", v) }
        return b
    }

    public func double(_ key: String) throws -> Double {
        guard let n = JSONObj.number(try need(key)) else { throw fail(key, "expected a number") }
        return n.doubleValue
    }

    /// An integer in lo...hi (hi nil: no upper bound).
    public func intIn(_ key: String, _ lo: Int64, _ hi: Int64?) throws -> Int {
        let v = try need(key)
        let range = "int in \(lo)..\(hi.map { String($0) } ?? "")"
        guard let n = JSONObj.number(v), n.doubleValue == n.doubleValue.rounded(), abs(n.doubleValue) < 9.0e15 else {
            throw expected(key, range, v)
        }
        let i = n.int64Value
        if i < lo || (hi != nil && i > hi!) || i > Int64(Int32.max) { throw expected(key, range, v) }
        return Int(i)
    }

    /// Any 32-bit integer.
    public func int(_ key: String) throws -> Int { try intIn(key, Int64(Int32.min), Int64(Int32.max)) }

    /// An integer of any size that fits Int64 (file sizes).
    public func long(_ key: String) throws -> Int64 {
        let v = try need(key)
        guard let n = JSONObj.number(v), n.doubleValue == n.doubleValue.rounded() else { throw expected(key, "an integer", v) }
        return n.int64Value
    }

    /// A number that stays finite as float32, in [lo, hi] ((lo, hi] when `openLo`).
    public func numberIn(_ key: String, _ lo: Double, _ hi: Double, openLo: Bool = false) throws -> Double {
        let v = try need(key)
        let d = JSONObj.number(v)?.doubleValue
        let ok = d.map { !$0.isNaN && Float($0).isFinite && (openLo ? $0 > lo : $0 >= lo) && $0 <= hi } ?? false
        if !ok { throw expected(key, "number in \(openLo ? "(" : "[")\(lo), \(hi)]", v) }
        return d!
    }

    /// One of `choices`.
    public func choice(_ key: String, _ choices: [String]) throws -> String {
        let v = raw(key)
        guard let s = v as? String, choices.contains(s) else {
            throw expected(key, "one of [" + choices.map { "\"\($0)\"" }.joined(separator: ", ") + "]", v)
        }
        return s
    }

    public func stringList(_ key: String) throws -> [String] {
        let l = try list(key)
        return try l.indices.map { (i: Int) throws -> String in
            let v = l[i]
            guard let s = v as? String else { throw fail("\(key)[\(i)]", "expected a string") }
            return s
        }
    }

    public func intList(_ key: String) throws -> [Int] {
        let l = try list(key)
        return try l.indices.map { (i: Int) throws -> Int in
            let v = l[i]
            guard let n = JSONObj.number(v), n.doubleValue == n.doubleValue.rounded(), abs(n.doubleValue) <= Double(Int32.max) else {
                throw fail("\(key)[\(i)]", "expected an integer")
            }
            return n.intValue
        }
    }

    public func doubleList(_ key: String) throws -> [Double] {
        let l = try list(key)
        return try l.indices.map { (i: Int) throws -> Double in
            let v = l[i]
            guard let n = JSONObj.number(v) else { throw fail("\(key)[\(i)]", "expected a number") }
            return n.doubleValue
        }
    }
}
