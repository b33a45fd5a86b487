import Foundation

/// Element types a bundle graph may use (runtime/BUNDLE.md section 2). Mirror of Tensor.kt.
public enum DType: String, CaseIterable {
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
public struct Tensor {
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

/// One graph input or output from the manifest; -1 in `shape` is a dynamic dim named in `dims`.
public struct TensorSpec {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let dims: [String]

    /// The shape with dynamic dims shown by name, e.g. [batch, 4, 4, 4].
    public func describe() -> String {
        "[" + shape.indices.map { shape[$0] < 0 ? dims[$0] : String(shape[$0]) }.joined(separator: ", ") + "]"
    }

    /// Throws saying expected vs actual dtype/shape if `t` does not fit; `bound` carries the
    /// sizes of dynamic dims seen so far in this call (e.g. the batch).
    public func check(_ t: Tensor, graph: String, role: String, bound: inout [String: Int]) throws {
        guard t.dtype == dtype else {
            throw LRFError.invalid("\(graph): \(role) '\(name)' expected dtype \(dtype.rawValue), got \(t.dtype.rawValue) (shape \(t.shape))")
        }
        guard t.shape.count == shape.count else {
            throw LRFError.invalid("\(graph): \(role) '\(name)' expected shape \(describe()), got \(t.shape)")
        }
        for k in shape.indices {
            let size = t.shape[k]
            if shape[k] >= 0 && size != shape[k] {
                throw LRFError.invalid("\(graph): \(role) '\(name)' expected shape \(describe()), got \(t.shape)")
            }
            if shape[k] < 0 {
                if size < 1 { throw LRFError.invalid("\(graph): \(role) '\(name)' dimension '\(dims[k])' must be >= 1, got \(t.shape)") }
                if let seen = bound[dims[k]] {
                    if seen != size {
                        throw LRFError.invalid("\(graph): \(role) '\(name)' has \(dims[k])=\(size) but another tensor has \(dims[k])=\(seen)")
                    }
                } else {
                    bound[dims[k]] = size
                }
            }
        }
    }

    static func parse(_ o: JSONObj) throws -> TensorSpec {
        let name = try o.string("name")
        let dtype = try DType.fromJSON(try o.string("dtype"), where: "\(o.source): \(o.path)")
        let shape = try o.intList("shape")
        let dims = try o.has("dims") ? o.stringList("dims") : shape.indices.map { "d\($0)" }
        if dims.count != shape.count { throw o.fail("dims", "has \(dims.count) names but shape has \(shape.count) dims") }
        if shape.contains(where: { $0 < -1 || $0 == 0 }) { throw o.fail("shape", "sizes must be >= 1 or -1 (dynamic), got \(shape)") }
        return TensorSpec(name: name, dtype: dtype, shape: shape, dims: dims)
    }
}

/// One graph entry of the manifest (`graphs.<name>`).
public struct GraphSpec {
    public let name: String
    public let file: String
    public let format: String
    public let inputs: [TensorSpec]
    public let outputs: [TensorSpec]
    public let steps: Int?
}

/// What each graph's inputs and outputs mean, by position (mirror of GraphRoles.kt): tensor
/// names always come from the manifest; this checks each position's dtype and rank.
enum GraphRoles {
    struct Role {
        let role: String
        let dtypes: Set<DType>
        let rank: Int
    }

    static let latent = Role(role: "latent", dtypes: [.float32], rank: 4)
    static let time = Role(role: "time", dtypes: [.float32], rank: 1)
    static let label = Role(role: "label", dtypes: [.int32], rank: 1)
    static let guidance = Role(role: "guidance", dtypes: [.float32], rank: 1)
    static let image = Role(role: "image", dtypes: [.uint8, .float32], rank: 4)

    static let stepInputs = [latent, time, label, guidance]
    static let stepOutputs = [Role(role: "velocity", dtypes: [.float32], rank: 4)]
    static let decoderInputs = [latent]
    static let imageOutputs = [image]
    static let fusedInputs = [Role(role: "noise", dtypes: [.float32], rank: 4), label, guidance]

    static func check(_ graphs: [String: GraphSpec], latentShape: [Int], fusedSteps: [Int]) throws {
        if let g = graphs[Manifest.step] { try checkGraph(g, stepInputs, stepOutputs, latentShape) }
        if let g = graphs[Manifest.decoder] { try checkGraph(g, decoderInputs, imageOutputs, nil) }
        for n in fusedSteps {
            if let g = graphs[Manifest.fusedPrefix + String(n)] { try checkGraph(g, fusedInputs, imageOutputs, latentShape) }
        }
    }

    static func checkGraph(_ g: GraphSpec, _ ins: [Role], _ outs: [Role], _ latentShape: [Int]?) throws {
        try checkList(g, "inputs", g.inputs, ins)
        try checkList(g, "outputs", g.outputs, outs)
        if let latentShape = latentShape {
            // the first input carries one image's latent [1, C, h, w]: fixed dims must match
            let s = g.inputs[0].shape
            for k in 1...3 where s[k] >= 0 && s[k] != latentShape[k - 1] {
                throw LRFError.invalid("manifest.json: graphs.\(g.name): input '\(g.inputs[0].name)' has shape " +
                    "\(g.inputs[0].describe()) but the manifest's latent is \(latentShape)")
            }
        }
    }

    static func checkList(_ g: GraphSpec, _ what: String, _ specs: [TensorSpec], _ roles: [Role]) throws {
        guard specs.count == roles.count else {
            throw LRFError.invalid("manifest.json: graphs.\(g.name): expected \(roles.count) \(what) " +
                "(\(roles.map { $0.role }.joined(separator: ", "))), got \(specs.count) (\(specs.map { $0.name }.joined(separator: ", ")))")
        }
        for k in roles.indices {
            let r = roles[k]
            let s = specs[k]
            if !r.dtypes.contains(s.dtype) || s.shape.count != r.rank {
                let allowed = DType.allCases.filter { r.dtypes.contains($0) }.map { $0.rawValue }.joined(separator: "/")
                throw LRFError.invalid("manifest.json: graphs.\(g.name): \(what)[\(k)] '\(s.name)' (the \(r.role)) must be " +
                    "\(allowed) of rank \(r.rank), got \(s.dtype.rawValue) \(s.describe())")
            }
        }
    }
}
