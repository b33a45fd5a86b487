import XCTest
@testable import LRFKit

/// Mirror of GeneratorTest.kt, EditingTest.kt (the Generator part) and GoldenCheckTest.kt /
/// GoldenRunTest.kt: the sampling and editing loops on FakeEngine, whose graphs are known functions.
final class GeneratorTests: XCTestCase {
    func manifest() throws -> Manifest { try Fixtures.manifest() }

    /// The sample with a fixed-K denoise file (as Core ML and ExecuTorch write).
    func fixedWindow(_ k: Int) throws -> Manifest {
        try Fixtures.manifest {
            $0[path: ["graphs", "denoise", "window"]] = ["min": k, "max": k]
            $0.setInList(["graphs", "denoise", "inputs"], 1, "shape", [k + 1])
        }
    }

    /// The image the fake engine makes from the Euler loop computed here by hand.
    func byHand(_ m: Manifest, seed: UInt64, label: Int, g: Float, steps: Int) throws -> [UInt32] {
        let z = try FakeEngine.denoise(try PRNG.noise(seed: seed, shape: m.latentShape), try Schedule.timesteps(steps: steps, shift: m.shift),
                                       label: label, g: g)
        return try Generator(manifest: m, engine: FakeEngine(m)).decode(z)
    }

    func testStepwiseIsOneWindowPerStep() throws {
        let m = try manifest()
        let engine = FakeEngine(m)
        var progress: [String] = []
        let img = try Generator(manifest: m, engine: engine).generate(label: 2, seed: 42, steps: 5, guidance: 0.5, mode: .stepwise) { i, n in
            progress.append("\(i)/\(n)"); return true
        }
        XCTAssertEqual(progress, ["1/5", "2/5", "3/5", "4/5", "5/5"])
        XCTAssertEqual(engine.calls, ["denoise:1", "denoise:1", "denoise:1", "denoise:1", "denoise:1", "decoder"])
        XCTAssertEqual(img.calls, 5)
        XCTAssertEqual(img.argb, try byHand(m, seed: 42, label: 2, g: 0.5, steps: 5))
    }

    func testFusedIsOneCallForAnyNAndEqualsStepwise() throws {
        let m = try manifest()
        let engine = FakeEngine(m)
        let fused = try Generator(manifest: m, engine: engine).generate(label: 1, seed: 7, steps: 13, guidance: 2, mode: .fused)
        XCTAssertEqual(engine.calls, ["denoise:13", "decoder"])
        let stepwise = try Generator(manifest: m, engine: FakeEngine(m)).generate(label: 1, seed: 7, steps: 13, guidance: 2, mode: .stepwise)
        XCTAssertEqual(fused.argb, stepwise.argb)
        XCTAssertEqual(fused.argb, try byHand(m, seed: 7, label: 1, g: 2, steps: 13))
        XCTAssertEqual(try Generator(manifest: m, engine: FakeEngine(m)).generate(label: 0, seed: 1).mode, .fused)   // auto = sampling.mode
    }

    func testFixedWindowGraphsRunWindowsOfK() throws {
        let m = try fixedWindow(2)
        let engine = FakeEngine(m)
        var progress: [Int] = []
        let img = try Generator(manifest: m, engine: engine).generate(label: 3, seed: 9, steps: 8, mode: .stepwise) { i, _ in
            progress.append(i); return true
        }
        XCTAssertEqual(engine.calls, ["denoise:2", "denoise:2", "denoise:2", "denoise:2", "decoder"])
        XCTAssertEqual(progress, [2, 4, 6, 8])
        XCTAssertEqual(img.argb, try byHand(m, seed: 9, label: 3, g: 3, steps: 8))
        XCTAssertThrowsMessage("takes windows of K = 2 steps, which cannot cover 7 steps") {
            _ = try Generator(manifest: m, engine: FakeEngine(m)).generate(label: 3, seed: 9, steps: 7)
        }
        XCTAssertEqual(try Schedule.windows(13, WindowSpec(min: 3, max: 5), fused: true), [5, 10, 13])
        XCTAssertThrowsMessage("cannot cover 11 steps") { _ = try Schedule.windows(11, WindowSpec(min: 3, max: 5), fused: true) }
        XCTAssertEqual(try Schedule.windows(10, WindowSpec(min: 1, max: nil), fused: false), Array(1...10))
    }

    func testCancelStopsWithoutAnImage() throws {
        let m = try manifest()
        let engine = FakeEngine(m)
        XCTAssertThrowsMessage("generation cancelled after step 3/10; no image was produced") {
            _ = try Generator(manifest: m, engine: engine).generate(label: 1, seed: 5, steps: 10, mode: .stepwise) { i, _ in i < 3 }
        }
        XCTAssertEqual(engine.calls, ["denoise:1", "denoise:1", "denoise:1"])          // decoder never ran
    }

    func testBadArgumentsAreRefused() throws {
        let m = try manifest()
        let gen = Generator(manifest: m, engine: FakeEngine(m))
        XCTAssertThrowsMessage("unknown label 10") { _ = try gen.generate(label: 10, seed: 0) }
        XCTAssertThrowsMessage("unknown label -1") { _ = try gen.generate(label: -1, seed: 0) }
        XCTAssertThrowsMessage("steps must be an integer in 1..1000, got 0") { _ = try gen.generate(label: 0, seed: 0, steps: 0) }
        XCTAssertThrowsMessage("steps must be an integer in 1..1000, got 1001") { _ = try gen.generate(label: 0, seed: 0, steps: 1001) }
        XCTAssertThrowsMessage("guidance must be a finite number in [0.0, 20.0]") { _ = try gen.generate(label: 0, seed: 0, guidance: .nan) }
        XCTAssertThrowsMessage("guidance must be a finite number in [0.0, 20.0]") { _ = try gen.generate(label: 0, seed: 0, guidance: 25) }
        XCTAssertThrowsMessage("guidance must be a finite number in [0.0, 20.0]") { _ = try Schedule.checkGuidance(1e39) }
    }

    func testEngineInputsAndOutputsAreValidatedByRole() throws {
        let m = try manifest()
        XCTAssertThrowsMessage("denoise: output 'denoised' (latent) expected shape [batch, 4, 4, 4], got [1, 4, 4, 2]") {
            _ = try Generator(manifest: m, engine: FakeEngine(m, outputShape: [1, 4, 4, 2])).generate(label: 0, seed: 0, steps: 2, mode: .stepwise)
        }
        let gen = Generator(manifest: m, engine: FakeEngine(m))
        let ok: [String: Tensor] = [GraphRoles.latent: try Tensor.f32([2, 4, 4, 4], [Float](repeating: 0, count: 128)),
                                    GraphRoles.timesteps: try Tensor.f32([3], [1, 0.5, 0]),
                                    GraphRoles.label: try Tensor.i32([2], [0, 0]), GraphRoles.guidance: try Tensor.f32([2], [0, 0])]
        XCTAssertEqual(try gen.run(m.denoiseGraph, ok)[GraphRoles.latent]?.shape, [2, 4, 4, 4])
        var badBatch = ok
        badBatch[GraphRoles.label] = try Tensor.i32([3], [0, 0, 0])
        XCTAssertThrowsMessage("denoise: input 'y' (label) has batch=3 but another tensor has batch=2") { _ = try gen.run(m.denoiseGraph, badBatch) }
        var badType = ok
        badType[GraphRoles.guidance] = try Tensor.i32([2], [0, 0])
        XCTAssertThrowsMessage("denoise: input 'g' (guidance) expected dtype float32, got int32 (shape [2])") { _ = try gen.run(m.denoiseGraph, badType) }
        var missing = ok
        missing[GraphRoles.timesteps] = nil
        XCTAssertThrowsMessage("denoise: no tensor given for role 'timesteps'") { _ = try gen.run(m.denoiseGraph, missing) }
    }

    func testCloseReleasesSessions() throws {
        let m = try manifest()
        let engine = FakeEngine(m)
        let gen = Generator(manifest: m, engine: engine)
        try gen.preload()
        gen.close()
        XCTAssertEqual(engine.closed, 3)
        XCTAssertThrowsMessage("this Generator is closed; load the bundle again") { _ = try gen.generate(label: 0, seed: 0) }
    }

    // --- editing (BUNDLE.md 8) ----------------------------------------------------------------

    let photo: [UInt8] = (0..<(32 * 32 * 3)).map { UInt8($0 * 37 % 251) }

    func testStrengthOneEqualsGenerateAndZeroIsTheRoundTrip() throws {
        let m = try manifest()
        let engine = FakeEngine(m)
        let gen = Generator(manifest: m, engine: engine)
        let edited = try gen.edit(EditInput(rgb: photo, strength: 1), label: 5, seed: 11, steps: 8)
        XCTAssertEqual(engine.calls, ["encoder", "denoise:8", "decoder"])
        XCTAssertEqual(edited.argb, try Generator(manifest: m, engine: FakeEngine(m)).generate(label: 5, seed: 11, steps: 8).argb)
        let kept = try gen.edit(EditInput(rgb: photo, strength: 0), label: 5, seed: 11, steps: 8)
        XCTAssertEqual(kept.steps, 0)
        XCTAssertEqual(kept.argb, try gen.decode(try gen.encode(photo)))
    }

    func testImg2ImgStartsAtTheNearestTimestep() throws {
        let m = try manifest()
        let gen = Generator(manifest: m, engine: FakeEngine(m))
        var progress: [String] = []
        let edited = try gen.edit(EditInput(rgb: photo, strength: 0.6), label: 2, seed: 3, steps: 8, mode: .stepwise) { i, n in
            progress.append("\(i)/\(n)"); return true
        }
        XCTAssertEqual(progress, ["1/5", "2/5", "3/5", "4/5", "5/5"])      // 0.6 is nearest t[3] = 0.625
        let ts = try Schedule.timesteps(steps: 8, shift: 1)
        let start = try Editing.noised(try gen.encode(photo), try PRNG.noise(seed: 3, shape: m.latentShape), t: ts[3])
        XCTAssertEqual(edited.argb, try gen.decode(try FakeEngine.denoise(start, Array(ts[3...]), label: 2, g: 3)))
    }

    func testInpaintKeepsTheMaskedRegion() throws {
        let m = try manifest()
        let engine = FakeEngine(m)
        let gen = Generator(manifest: m, engine: engine)
        let mask: [UInt8] = (0..<(32 * 32)).map { $0 / 32 < 16 ? 255 : 0 }          // keep the top half
        let edited = try gen.edit(EditInput(rgb: photo, strength: 0.8, keepMask: mask), label: 4, seed: 21, steps: 8, mode: .fused)
        XCTAssertEqual(engine.calls, ["encoder"] + [String](repeating: "denoise:1", count: 6) + ["decoder"])
        let ts = try Schedule.timesteps(steps: 8, shift: 1)
        let zImg = try gen.encode(photo)
        let noise = try PRNG.noise(seed: 21, shape: m.latentShape)
        let keep = try Editing.latentKeepMask(mask, height: 32, width: 32)
        var z = try Editing.noised(zImg, noise, t: ts[2])
        for i in 2..<8 {
            z = try FakeEngine.denoise(z, [ts[i], ts[i + 1]], label: 4, g: 3)
            try Editing.blend(&z, zImg, noise, t: ts[i + 1], keep: keep)
        }
        XCTAssertEqual(edited.argb, try gen.decode(z))
        let roundTrip = try gen.decode(zImg)
        XCTAssertEqual(Array(edited.argb[0..<(16 * 32)]), Array(roundTrip[0..<(16 * 32)]))
        XCTAssertNotEqual(Array(edited.argb[(16 * 32)...]), Array(roundTrip[(16 * 32)...]))
        let all = try gen.edit(EditInput(rgb: photo, strength: 0.7, keepMask: [UInt8](repeating: 255, count: 32 * 32)), label: 1, seed: 2, steps: 8)
        XCTAssertEqual(all.argb, roundTrip)
    }

    func testEditRefusals() throws {
        let noEncoder = try Fixtures.manifest { $0[path: ["graphs", "encoder"]] = nil }
        XCTAssertThrowsMessage("this bundle has no encoder graph, so it cannot edit images") {
            _ = try Generator(manifest: noEncoder, engine: FakeEngine(noEncoder)).edit(EditInput(rgb: self.photo, strength: 0.5), label: 0, seed: 0)
        }
        let m = try manifest()
        let gen = Generator(manifest: m, engine: FakeEngine(m))
        XCTAssertThrowsMessage("the input image must be 32x32 RGB (3072 bytes), got 12 bytes") {
            _ = try gen.edit(EditInput(rgb: [UInt8](repeating: 0, count: 12), strength: 0.5), label: 0, seed: 0)
        }
        XCTAssertThrowsMessage("strength must be a number in [0, 1]") { _ = try gen.edit(EditInput(rgb: self.photo, strength: 1.01), label: 0, seed: 0) }
        XCTAssertThrowsMessage("give a mask of the image's size") {
            _ = try gen.edit(EditInput(rgb: self.photo, strength: 0.5, keepMask: [UInt8](repeating: 0, count: 16)), label: 0, seed: 0)
        }
    }

    // --- GoldenCheck: golden files built from the Python-made fixture (not from this port)

    /// A golden.files entry with all seven keys.
    static func entry(_ file: String, _ format: String, _ caseID: String?, _ content: String, _ metric: String?, _ bar: Double = 0,
                      shape: [Int]? = nil) -> [String: Any] {
        let null: Any = NSNull()
        var e: [String: Any] = ["file": file, "format": format, "content": content]
        e["dtype"] = format == "f32" ? ("float32" as Any) : null
        e["shape"] = shape.map { $0 as Any } ?? null
        e["case"] = caseID.map { $0 as Any } ?? null
        e["tolerance"] = metric.map { ["metric": $0, "bar": bar] as [String: Any] as Any } ?? null
        return e
    }

    func rngJSON(corruptWord: Bool = false) throws -> Data {
        var vectors: [Any] = []
        for c in try Fixtures.golden().obj("prng").objList("cases") {
            if try c.intIn("n", 0, nil) < 9 { continue }
            var words = try c.stringList("words").prefix(8).map { "0x" + $0 }
            if corruptWord { words[3] = "0x0000000000000001" }
            vectors.append(["seed": try c.string("seed"), "words_hex": words,
                            "uniform_bits": try c.stringList("uniform_bits").prefix(8).map { Int(UInt32($0, radix: 16)!) },
                            "normal_bits": try c.stringList("normal_bits").prefix(9).map { Int(UInt32($0, radix: 16)!) }] as [String: Any])
        }
        return try JSONSerialization.data(withJSONObject: ["spec": [String: Any](), "vectors": vectors] as [String: Any])
    }

    func manifestWithGolden() throws -> Manifest {
        try Fixtures.manifest {
            $0[path: ["golden", "files", "rng"]] = GeneratorTests.entry("golden/rng.json", "json", nil, "rng_vectors", "exact")
            $0[path: ["golden", "files", "noise"]] = GeneratorTests.entry("golden/noise.f32", "f32", "generate_fused_8", "noise", "max_abs", 1e-6,
                                                                         shape: [1, 4, 4, 4])
            for f in ["golden/rng.json", "golden/noise.f32"] {
                $0[path: ["files", f]] = ["size": 1, "sha256": String(repeating: "0", count: 64)] as [String: Any]
            }
        }
    }

    func testGoldenCheckPassesOnPythonVectorsAndFailsOnWrongOnes() throws {
        let m = try manifestWithGolden()
        let exact = (0...8).map { Float(8 - $0) / 8 }
        let noise = try PRNG.noise(seed: UInt64.max, shape: [4, 4, 4])
        let good = GoldenCheck.run(m, MemorySource(files: ["golden/rng.json": try rngJSON(), "golden/timesteps_generate_fused_8.f32": Fixtures.f32(exact),
                                                           "golden/noise.f32": Fixtures.f32(noise)]))
        XCTAssertTrue(good.ok, good.description)
        XCTAssertEqual(good.lines.count, 3)
        XCTAssertTrue(good.lines.contains { $0.hasPrefix("ok   rng: 5 seeds: words and uniforms bit-exact, 45 normals") }, good.description)

        var wrong = exact
        wrong[4] = 0.5000001
        var badNoise = noise
        badNoise[7] += 1e-5
        let bad = GoldenCheck.run(m, MemorySource(files: ["golden/rng.json": try rngJSON(corruptWord: true),
                                                          "golden/timesteps_generate_fused_8.f32": Fixtures.f32(wrong), "golden/noise.f32": Fixtures.f32(badNoise)]))
        XCTAssertFalse(bad.ok)
        XCTAssertTrue(bad.lines.contains { $0.hasPrefix("FAIL rng: seed 0 word 3") }, bad.description)
        XCTAssertTrue(bad.lines.contains { $0.hasPrefix("FAIL timesteps generate_fused_8: t[4]") }, bad.description)
        XCTAssertTrue(bad.lines.contains { $0.hasPrefix("FAIL noise generate_fused_8: max |noise - golden|") }, bad.description)
    }

    func testCompareTensorAndPSNR() throws {
        let a: [Float] = [1, -2, 4]
        XCTAssertEqual(try GoldenCheck.compareTensor(a, a, Tolerance(metric: "exact", bar: 0)), "0 of 3 values differ (bar 0.0)")
        let b: [Float] = [1, -2, 4.002]
        _ = try GoldenCheck.compareTensor(a, b, Tolerance(metric: "rel_max_abs", bar: 1e-3))
        XCTAssertThrowsMessage("rel_max_abs") { _ = try GoldenCheck.compareTensor(a, b, Tolerance(metric: "rel_max_abs", bar: 1e-4)) }
        XCTAssertThrowsMessage("1 of 3 values differ") { _ = try GoldenCheck.compareTensor(a, b, Tolerance(metric: "exact", bar: 0)) }
        let p = [UInt32](repeating: 0xFF80_8080, count: 4)
        XCTAssertEqual(try GoldenCheck.psnr(p, p), 100)
        var q = p
        q[0] = 0xFF81_8080
        XCTAssertEqual(try GoldenCheck.psnr(p, q), 10 * log10(255.0 * 255.0 * 12), accuracy: 1e-9)
    }

    // --- GoldenRun: the golden files written here by hand from the fake engine's functions

    func testGoldenRunComparesEveryFileAndCanFail() throws {
        let base = try manifest()
        let gen = Generator(manifest: base, engine: FakeEngine(base))
        let ts = try Schedule.timesteps(steps: 8, shift: 1)
        let noise = try PRNG.noise(seed: UInt64.max, shape: base.latentShape)
        let first = try FakeEngine.denoise(noise, Array(ts[0...1]), label: 3, g: 3)
        let final = try FakeEngine.denoise(noise, ts, label: 3, g: 3)
        let image = try gen.decode(final)
        // PNG decoding is the platform's; here "PNG" bytes are raw ARGB words, decoded back by `decode`
        func encode(_ px: [UInt32]) -> Data { px.withUnsafeBufferPointer { Data(buffer: $0) } }
        func decode(_ d: Data) throws -> ARGBImage {
            try ARGBImage(width: 32, height: 32, argb: d.withUnsafeBytes { Array($0.bindMemory(to: UInt32.self)) })
        }
        func bundle(latent: [Float], png: [UInt32]) throws -> (Manifest, MemorySource) {
            let m = try Fixtures.manifest {
                $0[path: ["golden", "files"]] = [
                    "first": GeneratorTests.entry("golden/first.f32", "f32", "generate_fused_8", "denoise_first", "rel_max_abs", 1e-3),
                    "final": GeneratorTests.entry("golden/final.f32", "f32", "generate_fused_8", "latent_final", "rel_max_abs", 1e-3),
                    "image": GeneratorTests.entry("golden/image.png", "png", "generate_fused_8", "image_fused", "psnr_db", 40)]
                for f in ["golden/first.f32", "golden/final.f32", "golden/image.png"] {
                    $0[path: ["files", f]] = ["size": 1, "sha256": String(repeating: "0", count: 64)] as [String: Any]
                }
            }
            return (m, MemorySource(files: ["golden/first.f32": Fixtures.f32(first), "golden/final.f32": Fixtures.f32(latent),
                                            "golden/image.png": encode(png)]))
        }
        let (m, source) = try bundle(latent: final, png: image)
        let good = GoldenRun.run(Generator(manifest: m, engine: FakeEngine(m)), source, decodePNG: decode)
        XCTAssertTrue(good.ok, good.description)
        XCTAssertEqual(good.lines.count, 3)
        XCTAssertTrue(good.lines.contains { $0.hasPrefix("ok   image fused generate_fused_8: PSNR 100.00 dB") }, good.description)

        var worseLatent = final
        worseLatent[5] += 0.5
        let (m2, s2) = try bundle(latent: worseLatent, png: image.enumerated().map { $0.offset < 512 ? $0.element ^ 0x1F : $0.element })
        let bad = GoldenRun.run(Generator(manifest: m2, engine: FakeEngine(m2)), s2, decodePNG: decode)
        XCTAssertFalse(bad.ok)
        XCTAssertTrue(bad.lines.contains { $0.hasPrefix("ok   denoise_first generate_fused_8") }, bad.description)
        XCTAssertTrue(bad.lines.contains { $0.hasPrefix("FAIL latent_final generate_fused_8: rel_max_abs") }, bad.description)
        XCTAssertTrue(bad.lines.contains { $0.hasPrefix("FAIL image fused generate_fused_8: PSNR") }, bad.description)
    }
}
