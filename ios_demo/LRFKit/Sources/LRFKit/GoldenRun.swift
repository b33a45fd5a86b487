import Foundation

/// A decoded image: ARGB words (0xAARRGGBB), row-major.
public struct ARGBImage: Sendable {
    public let width: Int
    public let height: Int
    public let argb: [UInt32]

    public init(width: Int, height: Int, argb: [UInt32]) throws {
        guard width > 0, height > 0, argb.count == width * height else {
            throw LRFError.invalid("image of \(width)x\(height) needs \(width * height) pixels, got \(argb.count)")
        }
        self.width = width
        self.height = height
        self.argb = argb
    }
}

/// The app's "Golden test" (mirror of GoldenRun.kt): every golden case of the bundle run through
/// this device's engine and compared with each file's tolerance: `denoise_first`, `latent_final`
/// and `image` where the bundle ships them (ONNX, ExecuTorch), and `reference_latent_final` /
/// `reference_image`, the PyTorch reference, which is what a Core ML bundle ships (it is written
/// on Linux, where Core ML cannot run). PNG decoding is the platform's, passed in as `decodePNG`.
public enum GoldenRun {
    static let engineContents: Set<String> = ["denoise_first", "latent_final", "image", "reference_latent_final", "reference_image"]

    /// The ids of the cases that have files to compare through the engine, sorted.
    public static func caseIDs(_ golden: GoldenSpec) -> [String] {
        golden.caseIDs.filter { id in golden.files.values.contains { $0.caseID == id && engineContents.contains($0.content) && $0.tolerance != nil } }
    }

    /// Runs every case; one line per compared file; never throws for a mismatch.
    public static func run(_ gen: Generator, _ source: BundleSource, decodePNG: (Data) throws -> ARGBImage) -> GoldenCheck.Report {
        guard let golden = gen.manifest.golden else {
            return GoldenCheck.Report(ok: false, lines: ["FAIL golden: the manifest has no 'golden' section"])
        }
        let ids = caseIDs(golden)
        if ids.isEmpty { return GoldenCheck.Report(ok: false, lines: ["FAIL golden: no case has a file to compare through the engine"]) }
        var rec = GoldenCheck.Recorder()
        for id in ids { runCase(gen, source, decodePNG, golden, golden.cases[id]!, &rec) }
        return rec.report()
    }

    static func runCase(_ gen: Generator, _ source: BundleSource, _ decodePNG: (Data) throws -> ARGBImage, _ golden: GoldenSpec,
                        _ c: GoldenCase, _ rec: inout GoldenCheck.Recorder) {
        let m = gen.manifest
        let input: EditInput?
        let r: Request
        do {
            input = try editInput(m, source, decodePNG, golden, c)
            r = try input.map { try gen.resolveEdit($0, label: c.label, seed: c.seed, steps: c.steps, guidance: c.guidance, mode: c.mode) }
                ?? gen.resolve(label: c.label, seed: c.seed, steps: c.steps, guidance: c.guidance, mode: c.mode)
        } catch {
            rec.record("case \(c.id)") { throw error }
            return
        }
        let files = golden.sortedFiles.filter { $0.caseID == c.id && $0.tolerance != nil && engineContents.contains($0.content) }
        // the final latent and image per mode, computed once each
        var latents: [Mode: [Float]] = [:]
        var images: [Mode: [UInt32]] = [:]
        func latent(_ mode: Mode) throws -> [Float] {
            if let z = latents[mode] { return z }
            let rm = try input.map { try gen.resolveEdit($0, label: c.label, seed: c.seed, steps: c.steps, guidance: c.guidance, mode: mode) }
                ?? gen.resolve(label: c.label, seed: c.seed, steps: c.steps, guidance: c.guidance, mode: mode)
            let z = try gen.sample(rm, input: input).0
            latents[mode] = z
            return z
        }
        for f in files {
            let mode = f.mode ?? c.mode
            rec.record("\(f.content)\(f.mode.map { " " + $0.rawValue } ?? "") \(c.id)") {
                switch f.content {
                case "denoise_first":
                    // the first window of the smallest K the graph takes (t[0..1] for ONNX)
                    let startAndWindow: ([Float], [Float])
                    if let input = input {
                        let s = try gen.editStart(input, r)
                        startAndWindow = (s.latent, s.window)
                    } else {
                        startAndWindow = (try PRNG.noise(seed: c.seed, shape: m.latentShape), try Schedule.timesteps(steps: r.steps, shift: m.shift))
                    }
                    let (start, window) = startAndWindow
                    let k = m.window.min
                    guard window.count > k else { throw LRFError.invalid("the case has fewer than \(k) steps: there is no first window") }
                    let mine = try gen.denoiseOnce(start, window: Array(window[0...k]), label: r.label, guidance: r.guidance)
                    return try GoldenCheck.compareTensor(mine, try GoldenCheck.readF32(source, f), f.tolerance!)
                case "latent_final", "reference_latent_final":
                    return try GoldenCheck.compareTensor(try latent(mode), try GoldenCheck.readF32(source, f), f.tolerance!)
                default:                                                        // image, reference_image
                    let argb: [UInt32]
                    if let cached = images[mode] { argb = cached } else {
                        argb = try gen.decode(try latent(mode))
                        images[mode] = argb
                    }
                    let want = try decodePNG(try source.readData(f.file))
                    guard want.width == m.imageWidth, want.height == m.imageHeight else {
                        throw LRFError.invalid("\(f.file) is \(want.width)x\(want.height), the generated image \(m.imageWidth)x\(m.imageHeight)")
                    }
                    let tol = f.tolerance!
                    guard tol.metric == "psnr_db" else { throw LRFError.invalid("metric \(tol.metric) does not compare images") }
                    let psnr = try GoldenCheck.psnr(argb, want.argb)
                    guard psnr >= tol.bar else { throw LRFError.invalid(String(format: "PSNR %.2f dB, bar %.0f dB", psnr, tol.bar)) }
                    return String(format: "PSNR %.2f dB (bar %.0f dB)", psnr, tol.bar)
                }
            }
        }
    }

    /// An editing case's input image (and inpaint mask) from its golden files; nil for generate.
    public static func editInput(_ m: Manifest, _ source: BundleSource, _ decodePNG: (Data) throws -> ARGBImage,
                                 _ golden: GoldenSpec, _ c: GoldenCase) throws -> EditInput? {
        if c.kind == "generate" { return nil }
        guard let img = golden.file(c.id, "input_image") else {
            throw LRFError.invalid("golden case \(c.id) (\(c.kind)) has no input_image file")
        }
        let photo = try decodePNG(try source.readData(img.file))
        try checkSize(m, photo, img.file)
        var mask: [UInt8]? = nil
        if c.kind == "inpaint" {
            guard let f = golden.file(c.id, "mask") else { throw LRFError.invalid("golden case \(c.id) (inpaint) has no mask file") }
            let gray = try decodePNG(try source.readData(f.file))
            try checkSize(m, gray, f.file)
            mask = Pixels.gray(fromARGB: gray.argb)
        }
        return EditInput(rgb: Pixels.rgbBytes(fromARGB: photo.argb), strength: c.strength!, keepMask: mask)
    }

    static func checkSize(_ m: Manifest, _ img: ARGBImage, _ file: String) throws {
        guard img.width == m.imageWidth, img.height == m.imageHeight else {
            throw LRFError.invalid("\(file) is \(img.width)x\(img.height), the bundle's images are \(m.imageWidth)x\(m.imageHeight)")
        }
    }
}
