import CoreGraphics
import Foundation
import ImageIO
import LRFKit
import PhotosUI
import SwiftUI

/// A thread-safe cancel flag read by the progress callback on the worker thread.
final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set(_ v: Bool) { lock.lock(); value = v; lock.unlock() }
    func get() -> Bool { lock.lock(); defer { lock.unlock() }; return value }
}

/// Screen state and the work behind it (mirror of the Android DemoViewModel). Loading
/// (containment and sha256 of every file, golden self-check, Core ML compilation) and generation
/// run off the main actor; everything crossing back is Sendable (Manifest, Report, Generator,
/// GeneratedImage, byte arrays). All model logic is in LRFKit.
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

    /// "Start from a photo": the picker's selection, the photo at the bundle's size, the strength.
    @Published var photoItem: PhotosPickerItem?
    @Published var photo: CGImage?
    @Published var strength = 0.6
    private var photoRGB: [UInt8]?

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
            let (m, report, gen) = try await Task.detached(priority: .userInitiated) { () async throws -> (Manifest, GoldenCheck.Report, Generator) in
                let m = try BundleVerifier.load(source)
                let report = GoldenCheck.run(m, source)
                let gen = Generator(manifest: m, engine: try await CoreMLEngine.load(source: source, manifest: m))
                try gen.preload()
                return (m, report, gen)
            }.value
            self.source = source
            generator = gen
            manifest = m
            steps = m.defaultSteps
            guidance = m.defaultGuidance
            goldenReport = (report.ok ? "Golden check passed\n" : "GOLDEN CHECK FAILED\n") + report.description
            status = "\(m.target) \(m.precision) bundle (schema v\(m.schemaVersion)\(m.guidanceDistilled ? ", guidance-distilled turbo" : "")), " +
                "\(m.files.count) files verified; denoise window \(m.window)" + (m.encoderGraph == nil ? "; no encoder (no editing)" : "")
        } catch {
            status = "No usable bundle"
            self.error = "\(error)"
        }
    }

    func randomSeed() { seedText = String(UInt64.random(in: 0...UInt64.max)) }

    /// Whether `mode` can run with the current step count (a fixed-K denoise graph needs N % K == 0).
    func modeAvailable(_ mode: Mode) -> Bool {
        guard let m = manifest else { return false }
        let fused = (mode == .auto ? m.defaultMode : mode) == .fused
        return (try? Schedule.windows(steps, m.window, fused: fused)) != nil
    }

    /// Loads the picked photo, centre-crops and scales it to the bundle's image size off the main actor.
    func loadPhoto(_ item: PhotosPickerItem?) {
        guard let item = item, let m = manifest else { return }
        let (w, h) = (m.imageWidth, m.imageHeight)
        Task {
            do {
                guard let data = try await item.loadTransferable(type: Data.self) else { throw LRFError.invalid("cannot read that photo") }
                let argb = try await Task.detached(priority: .userInitiated) { try DemoModel.scaledPhoto(data, width: w, height: h) }.value
                photoRGB = Pixels.rgbBytes(fromARGB: argb)
                photo = DemoModel.makeImage(argb, width: w, height: h)
                error = nil
            } catch {
                self.error = "\(error)"
            }
        }
    }

    func clearPhoto() {
        photoItem = nil
        photo = nil
        photoRGB = nil
    }

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
        let input = photoRGB.map { EditInput(rgb: $0, strength: strength) }
        let flag = cancelFlag
        Task.detached(priority: .userInitiated) {
            do {
                let onStep = { (i: Int, total: Int) -> Bool in
                    Task { @MainActor in self.progress = total == 0 ? 1 : Double(i) / Double(total) }
                    return !flag.get()
                }
                let img = try input.map { try gen.edit($0, label: label, seed: seed, steps: n, guidance: g, mode: m, onStep: onStep) }
                    ?? gen.generate(label: label, seed: seed, steps: n, guidance: g, mode: m, onStep: onStep)
                await MainActor.run {
                    self.image = DemoModel.makeImage(img.argb, width: img.width, height: img.height)
                    self.timings = "\(input == nil ? "generate" : "edit") \(img.mode.rawValue) \(img.steps) steps in \(img.calls) calls: \(img.timings)"
                    self.running = false
                }
            } catch {
                let message = "\(error)"
                await MainActor.run {
                    self.error = message
                    self.running = false
                }
            }
        }
    }

    func cancel() { cancelFlag.set(true) }

    /// Runs every golden case of the bundle on this device and compares with its files' tolerances.
    /// A Core ML bundle ships the PyTorch reference (`reference_*`), written where Core ML cannot run.
    func checkGoldenImage() {
        guard let gen = generator, let source = source else { return }
        running = true
        Task.detached(priority: .userInitiated) {
            let report = GoldenRun.run(gen, source, decodePNG: DemoModel.decodePNG)
            await MainActor.run {
                self.goldenReport = (self.goldenReport ?? "") + "\n" + report.description
                self.running = false
            }
        }
    }

    nonisolated static let bitmapInfo: UInt32 = CGImageAlphaInfo.premultipliedFirst.rawValue | CGBitmapInfo.byteOrder32Little.rawValue

    /// ARGB (0xAARRGGBB) -> CGImage: little-endian 32-bit words with alpha first.
    nonisolated static func makeImage(_ argb: [UInt32], width: Int, height: Int) -> CGImage? {
        let data = argb.withUnsafeBufferPointer { Data(buffer: $0) }
        guard let provider = CGDataProvider(data: data as CFData) else { return nil }
        return CGImage(width: width, height: height, bitsPerComponent: 8, bitsPerPixel: 32, bytesPerRow: width * 4,
                       space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: CGBitmapInfo(rawValue: bitmapInfo), provider: provider,
                       decode: nil, shouldInterpolate: false, intent: .defaultIntent)
    }

    /// `cg` drawn into width x height ARGB words (the layout of makeImage), from the rect `crop` of it.
    nonisolated static func draw(_ cg: CGImage, crop: CGRect? = nil, width: Int, height: Int) -> [UInt32] {
        var pixels = [UInt32](repeating: 0, count: width * height)
        let image = crop.flatMap { cg.cropping(to: $0) } ?? cg
        pixels.withUnsafeMutableBytes { buf in
            let ctx = CGContext(data: buf.baseAddress, width: width, height: height, bitsPerComponent: 8,
                                bytesPerRow: width * 4, space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: bitmapInfo)
            ctx?.interpolationQuality = .high
            ctx?.draw(image, in: CGRect(x: 0, y: 0, width: width, height: height))
        }
        return pixels
    }

    /// PNG -> ARGB words, drawn into the same pixel layout as makeImage.
    nonisolated static func decodePNG(_ data: Data) throws -> ARGBImage {
        guard let src = CGImageSourceCreateWithData(data as CFData, nil),
              let cg = CGImageSourceCreateImageAtIndex(src, 0, nil) else { throw LRFError.invalid("cannot decode PNG") }
        return try ARGBImage(width: cg.width, height: cg.height, argb: draw(cg, width: cg.width, height: cg.height))
    }

    /// A photo (any format ImageIO reads, EXIF orientation applied) centre-cropped to the target
    /// aspect (LRFKit's Pixels.centerCrop) and scaled to width x height.
    nonisolated static func scaledPhoto(_ data: Data, width: Int, height: Int) throws -> [UInt32] {
        let options: [CFString: Any] = [kCGImageSourceCreateThumbnailFromImageAlways: true,
                                        kCGImageSourceCreateThumbnailWithTransform: true,
                                        kCGImageSourceThumbnailMaxPixelSize: 8 * max(width, height)]
        guard let src = CGImageSourceCreateWithData(data as CFData, nil),
              let cg = CGImageSourceCreateThumbnailAtIndex(src, 0, options as CFDictionary) else {
            throw LRFError.invalid("cannot decode that photo")
        }
        let c = try Pixels.centerCrop(srcWidth: cg.width, srcHeight: cg.height, dstWidth: width, dstHeight: height)
        return draw(cg, crop: CGRect(x: c.x, y: c.y, width: c.width, height: c.height), width: width, height: height)
    }
}
