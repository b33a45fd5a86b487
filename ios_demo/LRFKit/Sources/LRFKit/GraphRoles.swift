import Foundation

/// What each graph's inputs and outputs mean, by role (runtime/BUNDLE.md 2.2): mirror of
/// GraphRoles.kt. Tensor names are free; every role a graph needs must be present once, with
/// the dtype and rank it needs, so a bundle the app cannot drive is refused at load time.
public enum GraphRoles {
    public static let latent = "latent"
    public static let timesteps = "timesteps"
    public static let label = "label"
    public static let guidance = "guidance"
    public static let image = "image"

    struct Role: Sendable {
        let role: String
        let dtypes: Set<DType>
        let rank: Int
    }

    static let denoiseInputs = [Role(role: latent, dtypes: [.float32], rank: 4), Role(role: timesteps, dtypes: [.float32], rank: 1),
                                Role(role: label, dtypes: [.int32], rank: 1), Role(role: guidance, dtypes: [.float32], rank: 1)]
    static let latentOut = [Role(role: latent, dtypes: [.float32], rank: 4)]
    static let encoderInputs = [Role(role: image, dtypes: [.uint8], rank: 4)]

    static func check(_ graphs: [String: GraphSpec], latentShape: [Int], imageFormat: String, source: String) throws {
        let imageOut = [Role(role: image, dtypes: [imageFormat == "float_nchw" ? .float32 : .uint8], rank: 4)]
        if let g = graphs[Manifest.denoise] {
            try checkGraph(g, denoiseInputs, latentOut, source)
            try checkLatent(g, "inputs", try g.input(latent), latentShape, source)
            try checkLatent(g, "outputs", try g.output(latent), latentShape, source)
            try checkWindow(g, source)
        }
        if let g = graphs[Manifest.decoder] { try checkGraph(g, [Role(role: latent, dtypes: [.float32], rank: 4)], imageOut, source) }
        if let g = graphs[Manifest.encoder] {
            // the encoder takes images as the decoder gives them: uint8 NHWC, or float NCHW in [-1, 1]
            let nchw = imageFormat == "float_nchw"
            try checkGraph(g, nchw ? [Role(role: image, dtypes: [.float32], rank: 4)] : encoderInputs, latentOut, source)
            let img = try g.input(image)
            if img.shape[nchw ? 1 : 3] != 3 {
                throw fail(g, "inputs", img, "expected \(nchw ? "[B, 3, H, W]" : "[B, H, W, 3]") (RGB), got \(img.describe())", source)
            }
        }
    }

    static func fail(_ g: GraphSpec, _ side: String, _ s: TensorSpec, _ why: String, _ source: String) -> LRFError {
        .invalid("\(source): graphs.\(g.name).\(side) '\(s.name)' (role \(s.role)): \(why)")
    }

    static func checkGraph(_ g: GraphSpec, _ ins: [Role], _ outs: [Role], _ source: String) throws {
        try checkSide(g, "inputs", g.inputs, ins, source)
        try checkSide(g, "outputs", g.outputs, outs, source)
    }

    static func checkSide(_ g: GraphSpec, _ side: String, _ specs: [TensorSpec], _ roles: [Role], _ source: String) throws {
        var seen = Set<String>()
        for s in specs {
            if !seen.insert(s.role).inserted {
                throw fail(g, side, s, "role '\(s.role)' appears twice; each role appears once", source)
            }
        }
        for r in roles {
            guard let s = specs.first(where: { $0.role == r.role }) else {
                throw LRFError.invalid("\(source): graphs.\(g.name).\(side): expected a tensor with role '\(r.role)', got roles [" +
                    specs.map { $0.role }.joined(separator: ", ") + "]")
            }
            if !r.dtypes.contains(s.dtype) || s.shape.count != r.rank {
                let allowed = DType.allCases.filter { r.dtypes.contains($0) }.map { $0.rawValue }.joined(separator: "/")
                throw fail(g, side, s, "expected \(allowed) of rank \(r.rank), got \(s.dtype.rawValue) \(s.describe())", source)
            }
        }
        // an input the app cannot feed makes the graph unusable; an extra output is ignored
        if side == "inputs", let unknown = specs.first(where: { s in !roles.contains(where: { $0.role == s.role }) }) {
            throw fail(g, side, unknown, "expected roles [" + roles.map { $0.role }.joined(separator: ", ") +
                "], got an input this app cannot feed", source)
        }
    }

    /// A latent [B, C, h, w]: fixed C, h, w must be the manifest's latent.
    static func checkLatent(_ g: GraphSpec, _ side: String, _ s: TensorSpec, _ latentShape: [Int], _ source: String) throws {
        for k in 1...3 where s.shape[k] >= 0 && s.shape[k] != latentShape[k - 1] {
            throw fail(g, side, s, "expected shape [B, " + latentShape.map { String($0) }.joined(separator: ", ") +
                "] (the manifest's latent), got \(s.describe())", source)
        }
    }

    static func checkWindow(_ g: GraphSpec, _ source: String) throws {
        guard let w = g.window else { throw LRFError.invalid("\(source): graphs.\(g.name).window: missing (required)") }
        let ts = try g.input(timesteps)
        if ts.shape[0] >= 0 && (w.max == nil || ts.shape[0] != w.max! + 1) {
            throw fail(g, "inputs", ts, "expected shape [\(w.max.map { String($0 + 1) } ?? "-1")] (window.max + 1), got \(ts.describe())", source)
        }
    }
}
