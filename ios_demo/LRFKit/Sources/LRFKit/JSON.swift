import Foundation

/// A JSON number kept as its literal text, so 64-bit integers and float bits survive
/// (JSONSerialization would turn 2^64-1 into a Double). Mirror of JsonNumber in Json.kt.
public struct JSONNumber: Equatable, CustomStringConvertible {
    public let text: String
    public init(_ text: String) { self.text = text }
    public var doubleValue: Double { Double(text) ?? .nan }
    /// The exact integer value, or nil if the literal has a fraction/exponent or overflows Int64.
    public var int64Value: Int64? { Int64(text) }
    public var description: String { text }
}

/// A small strict JSON reader (RFC 8259), a mirror of Json.kt. Values: [String: Any] objects
/// (key order kept in `JSONObject.keys`), [Any?] arrays, String, Bool, NSNull-free nil, JSONNumber.
public enum JSON {
    /// An object with its keys in document order.
    public struct Object {
        public var keys: [String] = []
        public var values: [String: Any?] = [:]
    }

    public static func parse(_ text: String) throws -> Any? {
        var p = Parser(Array(text.unicodeScalars))
        p.skipWS()
        let v = try p.value(depth: 0)
        p.skipWS()
        if p.pos != p.s.count { throw p.fail("unexpected trailing text") }
        return v
    }

    struct Parser {
        let s: [Unicode.Scalar]
        var pos = 0
        init(_ s: [Unicode.Scalar]) { self.s = s }

        func fail(_ why: String) -> LRFError { .invalid("invalid JSON at offset \(pos): \(why)") }

        mutating func skipWS() {
            while pos < s.count, s[pos] == " " || s[pos] == "\n" || s[pos] == "\r" || s[pos] == "\t" { pos += 1 }
        }

        func startsWith(_ word: String) -> Bool {
            let w = Array(word.unicodeScalars)
            return pos + w.count <= s.count && Array(s[pos..<pos + w.count]) == w
        }

        mutating func value(depth: Int) throws -> Any? {
            if depth > 256 { throw fail("nesting deeper than 256") }
            if pos >= s.count { throw fail("unexpected end of input") }
            let c = s[pos]
            if c == "{" { return try object(depth) }
            if c == "[" { return try array(depth) }
            if c == "\"" { return try string() }
            if c == "-" || (c >= "0" && c <= "9") { return try number() }
            if startsWith("true") { pos += 4; return true }
            if startsWith("false") { pos += 5; return false }
            if startsWith("null") { pos += 4; return nil as Any? }
            throw fail("unexpected character '\(c)'")
        }

        mutating func object(_ depth: Int) throws -> Object {
            var out = Object()
            pos += 1
            skipWS()
            if pos < s.count, s[pos] == "}" { pos += 1; return out }
            while true {
                skipWS()
                if pos >= s.count || s[pos] != "\"" { throw fail("expected a string key") }
                let key = try string()
                if out.values.keys.contains(key) { throw fail("duplicate key \"\(key)\"") }
                skipWS()
                try expect(":")
                skipWS()
                let v = try value(depth: depth + 1)
                out.keys.append(key)
                out.values[key] = .some(v)
                skipWS()
                if pos < s.count, s[pos] == "," { pos += 1; continue }
                try expect("}")
                return out
            }
        }

        mutating func array(_ depth: Int) throws -> [Any?] {
            var out: [Any?] = []
            pos += 1
            skipWS()
            if pos < s.count, s[pos] == "]" { pos += 1; return out }
            while true {
                skipWS()
                out.append(try value(depth: depth + 1))
                skipWS()
                if pos < s.count, s[pos] == "," { pos += 1; continue }
                try expect("]")
                return out
            }
        }

        mutating func expect(_ c: Unicode.Scalar) throws {
            if pos >= s.count || s[pos] != c { throw fail("expected '\(c)'") }
            pos += 1
        }

        mutating func string() throws -> String {
            pos += 1
            var out = String.UnicodeScalarView()
            var pendingHigh: UInt32? = nil   // a UTF-16 high surrogate waiting for its low half
            while true {
                if pos >= s.count { throw fail("unterminated string") }
                let c = s[pos]
                pos += 1
                if c == "\"" { return String(out) }
                if c == "\\" {
                    if pos >= s.count { throw fail("unterminated escape") }
                    let e = s[pos]
                    pos += 1
                    switch e {
                    case "\"": out.append("\"")
                    case "\\": out.append("\\")
                    case "/": out.append("/")
                    case "b": out.append("\u{8}")
                    case "f": out.append("\u{C}")
                    case "n": out.append("\n")
                    case "r": out.append("\r")
                    case "t": out.append("\t")
                    case "u":
                        if pos + 4 > s.count { throw fail("short \\u escape") }
                        guard let code = UInt32(String(String.UnicodeScalarView(s[pos..<pos + 4])), radix: 16) else {
                            throw fail("bad \\u escape")
                        }
                        pos += 4
                        if code >= 0xD800 && code < 0xDC00 {
                            pendingHigh = code
                            continue
                        }
                        if code >= 0xDC00 && code < 0xE000, let high = pendingHigh {
                            pendingHigh = nil
                            out.append(Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00))!)
                            continue
                        }
                        out.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                    default: throw fail("bad escape '\\\(e)'")
                    }
                } else if c.value < 0x20 {
                    throw fail("control character in string")
                } else {
                    out.append(c)
                }
            }
        }

        func isDigit(_ i: Int) -> Bool { i < s.count && s[i] >= "0" && s[i] <= "9" }

        mutating func number() throws -> JSONNumber {
            let start = pos
            if s[pos] == "-" { pos += 1 }
            if pos < s.count, s[pos] == "0" {
                pos += 1
            } else {
                if pos >= s.count || s[pos] < "1" || s[pos] > "9" { throw fail("bad number") }
                while isDigit(pos) { pos += 1 }
            }
            if pos < s.count, s[pos] == "." {
                pos += 1
                if !isDigit(pos) { throw fail("bad fraction") }
                while isDigit(pos) { pos += 1 }
            }
            if pos < s.count, s[pos] == "e" || s[pos] == "E" {
                pos += 1
                if pos < s.count, s[pos] == "+" || s[pos] == "-" { pos += 1 }
                if !isDigit(pos) { throw fail("bad exponent") }
                while isDigit(pos) { pos += 1 }
            }
            return JSONNumber(String(String.UnicodeScalarView(s[start..<pos])))
        }
    }
}

/// Typed access to a parsed JSON object with errors naming the path (mirror of JsonObj).
public struct JSONObj {
    public let object: JSON.Object
    public let path: String
    public let source: String

    public func fail(_ key: String?, _ why: String) -> LRFError {
        let whereText = key == nil ? path : (path.isEmpty ? key! : "\(path).\(key!)")
        return .invalid("\(source): \(whereText.isEmpty ? "<root>" : whereText): \(why)")
    }

    public var keys: [String] { object.keys }

    /// Present and not null.
    public func has(_ key: String) -> Bool {
        if let v = object.values[key], v != nil { return true }
        return false
    }

    func need(_ key: String) throws -> Any {
        guard let v = object.values[key], let value = v else { throw fail(key, "missing (required)") }
        return value
    }

    func join(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    public func obj(_ key: String) throws -> JSONObj {
        guard let o = try need(key) as? JSON.Object else { throw fail(key, "expected an object") }
        return JSONObj(object: o, path: join(key), source: source)
    }

    public func list(_ key: String) throws -> [Any?] {
        guard let l = try need(key) as? [Any?] else { throw fail(key, "expected a list") }
        return l
    }

    public func objList(_ key: String) throws -> [JSONObj] {
        var out: [JSONObj] = []
        for (i, v) in try list(key).enumerated() {
            guard let o = v as? JSON.Object else { throw fail("\(key)[\(i)]", "expected an object") }
            out.append(JSONObj(object: o, path: "\(join(key))[\(i)]", source: source))
        }
        return out
    }

    public func string(_ key: String) throws -> String {
        guard let s = try need(key) as? String else { throw fail(key, "expected a string") }
        return s
    }

    public func number(_ key: String) throws -> JSONNumber {
        guard let n = try need(key) as? JSONNumber else { throw fail(key, "expected a number") }
        return n
    }

    public func double(_ key: String) throws -> Double { try number(key).doubleValue }

    public func int(_ key: String) throws -> Int {
        let n = try number(key)
        guard let v = n.int64Value else { throw fail(key, "expected an integer, got \(n)") }
        guard v >= Int64(Int32.min), v <= Int64(Int32.max) else { throw fail(key, "integer \(v) out of range") }
        return Int(v)
    }

    public func long(_ key: String) throws -> Int64 {
        let n = try number(key)
        guard let v = n.int64Value else { throw fail(key, "expected an integer, got \(n)") }
        return v
    }

    public func bool(_ key: String) throws -> Bool {
        guard let b = try need(key) as? Bool else { throw fail(key, "expected true or false") }
        return b
    }

    public func stringList(_ key: String) throws -> [String] {
        var out: [String] = []
        for (i, v) in try list(key).enumerated() {
            guard let str = v as? String else { throw fail("\(key)[\(i)]", "expected a string") }
            out.append(str)
        }
        return out
    }

    public func intList(_ key: String) throws -> [Int] {
        var out: [Int] = []
        for (i, v) in try list(key).enumerated() {
            guard let n = v as? JSONNumber else { throw fail("\(key)[\(i)]", "expected an integer") }
            guard let l = n.int64Value else { throw fail("\(key)[\(i)]", "expected an integer, got \(n)") }
            guard l >= Int64(Int32.min), l <= Int64(Int32.max) else { throw fail("\(key)[\(i)]", "integer \(l) out of range") }
            out.append(Int(l))
        }
        return out
    }

    public func doubleList(_ key: String) throws -> [Double] {
        var out: [Double] = []
        for (i, v) in try list(key).enumerated() {
            guard let n = v as? JSONNumber else { throw fail("\(key)[\(i)]", "expected a number") }
            out.append(n.doubleValue)
        }
        return out
    }

    /// Parses `text` and requires an object at the root; `source` names the file in errors.
    public static func parse(_ text: String, source: String) throws -> JSONObj {
        let root: Any?
        do { root = try JSON.parse(text) } catch let e as LRFError { throw LRFError.invalid("\(source): \(e.message)") }
        guard let o = root as? JSON.Object else { throw LRFError.invalid("\(source): expected a JSON object at the root") }
        return JSONObj(object: o, path: "", source: source)
    }
}
