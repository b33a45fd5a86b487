import Foundation

/// Element types a bundle graph may use (runtime/BUNDLE.md 2.2). Mirror of Tensor.kt.
public enum DType: String, CaseIterable, Sendable {
    case float32, int32, uint8

    static func fromJSON(_ name: String, where whereText: String) throws -> DType {
        guard let d = DType(rawValue: name) else {
            throw LRFError.invalid("\(whereText): dtype '\(name)' is not one of " +
                DType.allCases.map { $0.rawValue }.joined(separator: ", ") + "; re-export the bundle or update the app")
        }
        return d
    }
}

/// A dense row-major tensor holding exactly one of float32, int32 or uint8 data.
public struct Tensor: Sendable {
    public let dtype: DType
    public let shape: [Int]
    public let floats: [Float]?
    public let ints: [Int32]?
    public let bytes: [UInt8]?

    public var count: Int { shape.reduce(1, *) }

    static func requireSize(_ shape: [Int], _ n: Int) throws {
        let count = shape.reduce(1, *)
        guard shape.allSatisfy({ $0 >= 0 }), count == n else {
            throw LRFError.invalid("tensor of shape \(shape) needs \(count) values, got \(n)")
        }
    }

    public static func f32(_ shape: [Int], _ data: [Float]) throws -> Tensor {
        try requireSize(shape, data.count)
        return Tensor(dtype: .float32, shape: shape, floats: data, ints: nil, bytes: nil)
    }

    public static func i32(_ shape: [Int], _ data: [Int32]) throws -> Tensor {
        try requireSize(shape, data.count)
        return Tensor(dtype: .int32, shape: shape, floats: nil, ints: data, bytes: nil)
    }

    public static func u8(_ shape: [Int], _ data: [UInt8]) throws -> Tensor {
        try requireSize(shape, data.count)
        return Tensor(dtype: .uint8, shape: shape, floats: nil, ints: nil, bytes: data)
    }
}

/// One graph input or output: its role (how readers bind it), its tensor name in the file,
/// dtype and shape; -1 in `shape` is a dynamic dim named in `dims`.
public struct TensorSpec: Sendable {
    public let name: String
    public let role: String
    public let dtype: DType
    public let shape: [Int]
    public let dims: [String]

    /// The shape with dynamic dims shown by name, e.g. [batch, 4, 4, 4].
    public func describe() -> String {
        "[" + shape.indices.map { shape[$0] < 0 ? dims[$0] : String(shape[$0]) }.joined(separator: ", ") + "]"
    }

    /// Throws saying expected vs actual dtype/shape if `t` does not fit; `bound` carries the
    /// sizes of dynamic dims seen so far in this call (e.g. the batch).
    public func check(_ t: Tensor, graph: String, side: String, bound: inout [String: Int]) throws {
        guard t.dtype == dtype else {
            throw LRFError.invalid("\(graph): \(side) '\(name)' (\(role)) expected dtype \(dtype.rawValue), got \(t.dtype.rawValue) (shape \(t.shape))")
        }
        guard t.shape.count == shape.count else {
            throw LRFError.invalid("\(graph): \(side) '\(name)' (\(role)) expected shape \(describe()), got \(t.shape)")
        }
        for k in shape.indices {
            let size = t.shape[k]
            if shape[k] >= 0 && size != shape[k] {
                throw LRFError.invalid("\(graph): \(side) '\(name)' (\(role)) expected shape \(describe()), got \(t.shape)")
            }
            if shape[k] < 0 {
                if size < 1 {
                    throw LRFError.invalid("\(graph): \(side) '\(name)' (\(role)) dimension '\(dims[k])' must be >= 1, got \(t.shape)")
                }
                if let seen = bound[dims[k]] {
                    if seen != size {
                        throw LRFError.invalid("\(graph): \(side) '\(name)' (\(role)) has \(dims[k])=\(size) but another tensor has \(dims[k])=\(seen)")
                    }
                } else {
                    bound[dims[k]] = size
                }
            }
        }
    }

    static func parse(_ o: JSONObj) throws -> TensorSpec {
        let name = try o.nonEmptyString("name")
        let role = try o.nonEmptyString("role")
        let dtype = try DType.fromJSON(try o.string("dtype"), where: "\(o.source): \(o.path).dtype")
        let shape = try o.intList("shape")
        let dims = try o.has("dims") ? o.stringList("dims") : shape.indices.map { "d\($0)" }
        if dims.count != shape.count {
            throw o.fail("dims", "expected \(shape.count) names (one per dim of shape), got \(dims.count)")
        }
        if shape.contains(where: { $0 < -1 || $0 == 0 }) {
            throw o.fail("shape", "expected sizes >= 1 or -1 (dynamic), got \(shape)")
        }
        return TensorSpec(name: name, role: role, dtype: dtype, shape: shape, dims: dims)
    }
}

/// `graphs.denoise.window`: the window lengths K (steps per call) the file accepts; max nil = any.
public struct WindowSpec: Sendable, CustomStringConvertible {
    public let min: Int
    public let max: Int?

    public init(min: Int, max: Int?) {
        self.min = min
        self.max = max
    }

    public func allows(_ k: Int) -> Bool { k >= min && (max == nil || k <= max!) }

    public var description: String {
        guard let mx = max else { return "K >= \(min)" }
        return mx == min ? "K = \(min)" : "K in \(min)..\(mx)"
    }
}

/// One graph entry of the manifest (`graphs.<name>`). Readers bind tensors by role.
public struct GraphSpec: Sendable {
    public let name: String
    public let file: String
    public let format: String
    public let inputs: [TensorSpec]
    public let outputs: [TensorSpec]
    /// `denoise` only.
    public let window: WindowSpec?
    /// ONNX only: files holding this graph's tensors.
    public let externalData: [String]

    public func input(_ role: String) throws -> TensorSpec {
        guard let s = inputs.first(where: { $0.role == role }) else { throw LRFError.invalid("graph \(name) has no input with role '\(role)'") }
        return s
    }

    public func output(_ role: String) throws -> TensorSpec {
        guard let s = outputs.first(where: { $0.role == role }) else { throw LRFError.invalid("graph \(name) has no output with role '\(role)'") }
        return s
    }
}
