import XCTest
@testable import LRFKit

/// Mirror of GeneratorTest.kt and GoldenCheckTest.kt: the sampling loop on a fake engine.
final class GeneratorTests: XCTestCase {
    /// step: v = latent * (1 + label) + guidance; decoder/generator: every byte = |first latent| * 10.
    final class FakeEngine: Engine {
        let manifest: Manifest
        let velocityShape: [Int]?
        var calls: [String] = []
        var closed = 0

        init(_ manifest: Manifest, velocityShape: [Int]? = nil) {
            self.manifest = manifest
            self.velocityShape = velocityShape
        }

        final class Session: GraphSession {
            let engine: FakeEngine
            let graph: GraphSpec
            init(_ engine: FakeEngine, _ graph: GraphSpec) { self.engine = engine; self.graph = graph }

            func run(_ inputs: [String: Tensor]) throws -> [String: Tensor] {
                engine.calls.append(graph.name)
                let names = graph.inputs.map { $0.name }
                XCTAssertEqual(Set(inputs.keys), Set(names))          // names come from the manifest
                let first = inputs[names[0]]!
                if graph.name == Manifest.step {
                    let label = Float(inputs[names[2]]!.ints![0])
                    let g = inputs[names[3]]!.floats![0]
                    let shape = engine.velocityShape ?? first.shape
                    let v = (0..<shape.reduce(1, *)).map { first.floats![$0] * (1 + label) + g }
                    return [graph.outputs[0].name: try Tensor.f32(shape, v)]
                }
                let h = engine.manifest.imageHeight, w = engine.manifest.imageWidth
                let px = UInt8(Int(abs(first.floats![0]) * 10) & 0xFF)
                return [graph.outputs[0].name: try Tensor.u8([1, h, w, 3], [UInt8](repeating: px, count: h * w * 3))]
            }

            func close() { engine.closed += 1 }
        }

        func open(_ graph: GraphSpec) throws -> GraphSession { Session(self, graph) }
    }

    func manifest(renameInputs: Bool = false) throws -> Manifest {
        var text = try Fixtures.text("sample_manifest.json")
        if renameInputs { text = text.replacingOccurrences(of: "\"name\": \"latent\"", with: "\"name\": \"z_in\"") }
        return try Manifest.parse(text)
    }

    func testStepwiseIsTheEulerLoopOverTheStepGraph() throws {
        let m = try manifest(renameInputs: true)
        let engine = FakeEngine(m)
        let gen = Generator(manifest: m, engine: engine)
        var progress: [String] = []
        let img = try gen.generate(label: 2, seed: 42, steps: 5, guidance: 0.5, mode: .stepwise) { i, n in
            progress.append("\(i)/\(n)"); return true
        }
        XCTAssertEqual(progress, ["1/5", "2/5", "3/5", "4/5", "5/5"])
        XCTAssertEqual(engine.calls, ["step", "step", "step", "step", "step", "decoder"])
        XCTAssertEqual(img.argb.count, 32 * 32)
        XCTAssertEqual(img.mode, .stepwise)

        var z = try PRNG.noise(seed: 42, shape: [4, 4, 4])
        let ts = try Schedule.timesteps(steps: 5, shift: 1.0)
        for i in 0..<5 { try Schedule.eulerStep(&z, z.map { $0 * 3 + 0.5 }, t: ts[i], tNext: ts[i + 1]) }
        let mine = try gen.sampleLatent(try PRNG.noise(seed: 42, shape: [4, 4, 4]), shape: [1, 4, 4, 4],
                                        label: try Tensor.i32([1], [2]), guidance: try Tensor.f32([1], [0.5]), steps: 5, onStep: nil)
        XCTAssertEqual(Fixtures.bitsOf(mine), Fixtures.bitsOf(z))
    }

    func testAutoPicksFusedWhenExported() throws {
        let m = try manifest()
        let engine = FakeEngine(m)
        var calls = 0
        let img = try Generator(manifest: m, engine: engine).generate(label: 0, seed: 1, steps: 8) { i, n in
            calls += 1; XCTAssertEqual(i, 8); XCTAssertEqual(n, 8); return true
        }
        XCTAssertEqual(img.mode, .fused)
        XCTAssertEqual(engine.calls, ["generator_8"])
        XCTAssertEqual(calls, 1)
        XCTAssertEqual(try Generator(manifest: m, engine: FakeEngine(m)).generate(label: 0, seed: 1, steps: 7).mode, .stepwise)
    }

    func testCancelStopsWithoutAnImage() throws {
        let m = try manifest()
        let engine = FakeEngine(m)
        XCTAssertThrowsMessage("after step 3/10") {
            _ = try Generator(manifest: m, engine: engine).generate(label: 1, seed: 5, steps: 10, mode: .stepwise) { i, _ in i < 3 }
        }
        XCTAssertEqual(engine.calls, ["step", "step", "step"])             // decoder never ran
    }

    func testBadArgumentsAreRefused() throws {
        let m = try manifest()
        let gen = Generator(manifest: m, engine: FakeEngine(m))
        XCTAssertThrowsMessage("unknown label 10") { _ = try gen.generate(label: 10, seed: 0) }
        XCTAssertThrowsMessage("unknown label -1") { _ = try gen.generate(label: -1, seed: 0) }
        XCTAssertThrowsMessage("steps must be >= 1") { _ = try gen.generate(label: 0, seed: 0, steps: 0) }
        XCTAssertThrowsMessage("guidance must be a finite number") { _ = try gen.generate(label: 0, seed: 0, guidance: .nan) }
        XCTAssertThrowsMessage("no fused graph for steps=50; this bundle has fused graphs for 8") {
            _ = try gen.generate(label: 0, seed: 0, steps: 50, mode: .fused)
        }
    }

    func testEngineOutputAndInputsAreValidated() throws {
        let m = try manifest()
        XCTAssertThrowsMessage("step: output 'velocity' expected shape [batch, 4, 4, 4], got [1, 4, 4, 2]") {
            _ = try Generator(manifest: m, engine: FakeEngine(m, velocityShape: [1, 4, 4, 2])).generate(label: 0, seed: 0, steps: 2, mode: .stepwise)
        }
        let gen = Generator(manifest: m, engine: FakeEngine(m))
        let step = try m.graph("step")
        let ok = [try Tensor.f32([2, 4, 4, 4], [Float](repeating: 0, count: 128)), try Tensor.f32([2], [0, 0]),
                  try Tensor.i32([2], [0, 0]), try Tensor.f32([2], [0, 0])]
        XCTAssertEqual(try gen.run(step, ok)[0].shape, [2, 4, 4, 4])
        var badBatch = ok
        badBatch[1] = try Tensor.f32([3], [0, 0, 0])
        XCTAssertThrowsMessage("step: input 't' has batch=3 but another tensor has batch=2") { _ = try gen.run(step, badBatch) }
        var badType = ok
        badType[2] = try Tensor.f32([2], [0, 0])
        XCTAssertThrowsMessage("step: input 'label' expected dtype int32, got float32 (shape [2])") { _ = try gen.run(step, badType) }
    }

    func testCloseReleasesSessions() throws {
        let m = try manifest()
        let engine = FakeEngine(m)
        let gen = Generator(manifest: m, engine: engine)
        try gen.preload()
        gen.close()
        XCTAssertEqual(engine.closed, 3)
        XCTAssertThrowsMessage("closed") { _ = try gen.generate(label: 0, seed: 0) }
    }

    // GoldenCheck on golden files built from the Python-made fixture (not from this port).
    func rngJSON(corruptWord: Bool = false) throws -> String {
        var vectors: [Any?] = []
        for c in try Fixtures.golden().obj("prng").objList("cases") {
            if try c.int("n") < 8 { continue }
            let seed = try PRNG.parseSeed(try c.string("seed"))
            var words: [Any?] = try c.stringList("words").prefix(8).map { ("0x" + $0) as Any? }
            if corruptWord { words[3] = "0x0000000000000001" }
            var v = JSON.Object()
            v[path: ["seed"]] = JSONNumber(try c.string("seed"))
            v[path: ["seed_hex"]] = "0x" + String(seed, radix: 16)
            v[path: ["words_hex"]] = words
            v[path: ["uniform_bits"]] = try c.stringList("uniform_bits").prefix(8).map { JSONNumber(String(UInt32($0, radix: 16)!)) } as [Any?]
            v[path: ["normal_bits"]] = try c.stringList("normal_bits").prefix(8).map { JSONNumber(String(UInt32($0, radix: 16)!)) } as [Any?]
            vectors.append(v)
        }
        var root = JSON.Object()
        root[path: ["vectors"]] = vectors
        return Fixtures.write(root)
    }

    struct MemorySource: BundleSource {
        let files: [String: Data]
        var description: String { "memory" }
        func url(_ relPath: String) -> URL { URL(fileURLWithPath: "/nonexistent/" + relPath) }
        func readData(_ relPath: String) throws -> Data {
            guard let d = files[relPath] else { throw LRFError.notFound(relPath) }
            return d
        }
    }

    func f32(_ values: [Float]) -> Data {
        var d = Data()
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        return d
    }

    func manifestWithGolden() throws -> Manifest {
        var m = try Fixtures.sample()
        var entry = JSON.Object()
        entry[path: ["file"]] = "golden/rng.json"
        m[path: ["golden", "files", "rng"]] = entry
        return try Manifest.parse(Fixtures.write(m))
    }

    func testGoldenCheckPassesOnPythonVectorsAndFailsOnWrongOnes() throws {
        let m = try manifestWithGolden()
        let exact = (0...8).map { Float(8 - $0) / 8 }
        let good = GoldenCheck.run(m, MemorySource(files: ["golden/rng.json": Data(try rngJSON().utf8), "golden/timesteps.f32": f32(exact)]))
        XCTAssertTrue(good.ok, good.description)
        XCTAssertEqual(good.lines.count, 2)

        var wrong = exact
        wrong[4] = 0.5000001
        let bad = GoldenCheck.run(m, MemorySource(files: ["golden/rng.json": Data(try rngJSON(corruptWord: true).utf8), "golden/timesteps.f32": f32(wrong)]))
        XCTAssertFalse(bad.ok)
        XCTAssertTrue(bad.lines[0].hasPrefix("FAIL rng:") && bad.lines[0].contains("word 3"), bad.description)
        XCTAssertTrue(bad.lines[1].hasPrefix("FAIL timesteps: t[4]"), bad.description)
    }

    func testGoldenNoiseAndPSNR() throws {
        let c = try Fixtures.golden().obj("prng").objList("cases")[0]       // seed 0, n = 16
        var golden = Fixtures.floatBits(try c.stringList("normal_bits"))
        _ = try GoldenCheck.checkNoise(golden, seed: 0, latentShape: [1, 4, 4], tol: 1e-6)
        golden[5] += 1e-3
        XCTAssertThrowsMessage("max |noise - golden|") { _ = try GoldenCheck.checkNoise(golden, seed: 0, latentShape: [1, 4, 4], tol: 1e-6) }

        let a = [UInt32](repeating: 0xFF80_8080, count: 4)
        XCTAssertEqual(try GoldenCheck.psnr(a, a), 100)
        var b = a
        b[0] = 0xFF81_8080
        XCTAssertEqual(try GoldenCheck.psnr(a, b), 10 * log10(255.0 * 255.0 * 12), accuracy: 1e-9)
    }
}
