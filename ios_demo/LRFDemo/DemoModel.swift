import CoreGraphics
import Foundation
import ImageIO
import LRFKit

/// A thread-safe cancel flag read by the progress callback on the worker thread.
final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set(_ v: Bool) { lock.lock(); value = v; lock.unlock() }
    func get() -> Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// Screen state and the work behind it (mirror of the Android DemoViewModel). Loading (sha256 of
/// every file, golden self-check) and generation run off the main thread.
@MainActor
final class DemoModel: ObservableObject {
    /// The folder the app looks for: Documents/<name> (swap a bundle in with Finder/Files, no
    /// rebuild) first, then the copy built into the app from ios_demo/LRFDemo/<name>.
    static let bundleFolder = "Bundle"

    @Published var manifest: Manifest?
    @Published var status = "Loading bundle ..."
    @Published var error: String?
    @Published var goldenReport: String?

    @Published var classIndex = 0
    @Published var seedText = "0"
    @Published var steps = 8
    @Published var guidance: Float = 3
    @Published var mode: Mode = .auto

    @Published var running = false
    @Published var progress: Double = 0
    @Published var image: CGImage?
    @Published var timings: String?

    private var generator: Generator?
    private var source: BundleSource?
    private let cancelFlag = CancelFlag()

    init() {
        Task { await load() }
    }

    static func findBundle() -> URL? {
        let fm = FileManager.default
        if let docs = fm.urls(for: .documentDirectory, in: .userDomainMask).first?.appendingPathComponent(bundleFolder),
           fm.fileExists(atPath: docs.appendingPathComponent(Manifest.fileName).path) {
            return docs
        }
        return Bundle.main.url(forResource: bundleFolder, withExtension: nil)
    }

    func load() async {
        guard let root = Self.findBundle() else {
            status = "No usable bundle"
            error = "no '\(Self.bundleFolder)' folder in the app or in Documents: run lrf-export --target coreml " +
                "--out ios_demo/LRFDemo/\(Self.bundleFolder) and rebuild (see the README)"
            return
        }
        let source = DirectorySource(root: root)
        do {
            let (m, report, gen) = try await Task.detached(priority: .userInitiated) { () -> (Manifest, GoldenCheck.Report, Generator) in
                let m = try BundleVerifier.load(source)
                let report = GoldenCheck.run(m, source)
                let gen = Generator(manifest: m, engine: try CoreMLEngine(source: source, manifest: m))
                try gen.preload()
                return (m, report, gen)
            }.value
            self.source = source
            generator = gen
            manifest = m
            steps = m.defaultSteps
            guidance = m.defaultGuidance
            goldenReport = (report.ok ? "Golden check passed\n" : "GOLDEN CHECK FAILED\n") + report.description
            let fused = m.fusedSteps.isEmpty ? "none" : m.fusedSteps.map(String.init).joined(separator: ", ")
            status = "\(m.target) \(m.precision) bundle, \(m.files.count) files verified; fused N: \(fused)"
        } catch {
            status = "No usable bundle"
            self.error = "\(error)"
        }
    }

    func randomSeed() { seedText = String(UInt64.random(in: 0...UInt64.max)) }

    func modeAvailable(_ m: Mode) -> Bool { m != .fused || manifest?.fusedGraph(steps: steps) != nil }

    func generate() {
        guard let gen = generator else { return }
        let seed: UInt64
        do { seed = try PRNG.parseSeed(seedText) } catch { self.error = "\(error)"; return }
        error = nil
        running = true
        progress = 0
        cancelFlag.set(false)
        let label = classIndex, n = steps, g = guidance
        let m = modeAvailable(mode) ? mode : .auto
        let flag = cancelFlag
        Task.detached(priority: .userInitiated) {
            do {
                let img = try gen.generate(label: label, seed: seed, steps: n, guidance: g, mode: m) { i, total in
                    Task { @MainActor in self.progress = Double(i) / Double(total) }
                    return !flag.get()
                }
                let cg = DemoModel.makeImage(img)
                await MainActor.run {
                    self.image = cg
                    self.timings = "\(img.mode.rawValue) N=\(img.steps): \(img.timings)"
                    self.running = false
                }
            } catch {
                await MainActor.run {
                    self.error = "\(error)"
                    self.running = false
                }
            }
        }
    }

    func cancel() { cancelFlag.set(true) }

    /// Runs the bundle's golden case stepwise and compares with golden image_stepwise.png.
    func checkGoldenImage() {
        guard let gen = generator, let source = source else { return }
        guard let golden = gen.manifest.golden, let pngPath = golden.files["image_stepwise"] else {
            error = "this bundle has no golden image_stepwise"
            return
        }
        running = true
        Task.detached(priority: .userInitiated) {
            let line: String
            do {
                let img = try gen.generate(label: golden.label, seed: golden.seed, steps: golden.steps,
                                           guidance: golden.guidance, mode: .stepwise)
                let want = try DemoModel.decodePNG(try source.readData(pngPath))
                let psnr = try GoldenCheck.psnr(img.argb, want)
                let bar = golden.imagePsnrDb ?? 40
                line = String(format: "%@ golden image: PSNR %.2f dB (bar %.0f dB)", psnr >= bar ? "ok  " : "FAIL", psnr, bar)
            } catch {
                line = "FAIL golden image: \(error)"
            }
            await MainActor.run {
                self.goldenReport = (self.goldenReport ?? "") + "\n" + line
                self.running = false
            }
        }
    }

    /// ARGB (0xAARRGGBB) -> CGImage: little-endian 32-bit words with alpha first.
    nonisolated static func makeImage(_ img: GeneratedImage) -> CGImage? {
        let data = img.argb.withUnsafeBufferPointer { Data(buffer: $0) }
        guard let provider = CGDataProvider(data: data as CFData) else { return nil }
        let info = CGBitmapInfo(rawValue: CGImageAlphaInfo.premultipliedFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue)
        return CGImage(width: img.width, height: img.height, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: img.width * 4,
                       space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: info, provider: provider, decode: nil,
                       shouldInterpolate: false, intent: .defaultIntent)
    }

    /// PNG -> ARGB words, drawn into the same pixel layout as makeImage.
    nonisolated static func decodePNG(_ data: Data) throws -> [UInt32] {
        guard let src = CGImageSourceCreateWithData(data as CFData, nil),
              let cg = CGImageSourceCreateImageAtIndex(src, 0, nil) else { throw LRFError.invalid("cannot decode PNG") }
        var pixels = [UInt32](repeating: 0, count: cg.width * cg.height)
        let info = CGImageAlphaInfo.premultipliedFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue
        pixels.withUnsafeMutableBytes { buf in
            let ctx = CGContext(data: buf.baseAddress, width: cg.width, height: cg.height, bitsPerComponent: 8,
                                bytesPerRow: cg.width * 4, space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: info)
            ctx?.draw(cg, in: CGRect(x: 0, y: 0, width: cg.width, height: cg.height))
        }
        return pixels
    }
}
