import XCTest
@testable import LRFKit

/// Mirror of JsonTest.kt, ManifestTest.kt and BundleVerifierTest.kt.
final class ManifestTests: XCTestCase {
    func testJSONTypedAccessNamesThePath() throws {
        let o = try JSONObj.parse(#"{"graphs": {"step": {"inputs": [{"shape": "oops"}]}}, "n": true}"#, source: "manifest.json")
        XCTAssertThrowsMessage("manifest.json: graphs.step.inputs[0].shape: expected a list") {
            _ = try o.obj("graphs").obj("step").objList("inputs")[0].intList("shape")
        }
        XCTAssertThrowsMessage("manifest.json: name: missing (required)") { _ = try o.string("name") }
        // JSONSerialization gives booleans as NSNumber: they are still not numbers
        XCTAssertThrowsMessage("manifest.json: n: expected int in 1..") { _ = try o.intIn("n", 1, nil) }
        XCTAssertThrowsMessage("invalid JSON") { _ = try JSONObj.parse("{\"a\": NaN}", source: "x") }
    }

    func testSampleParsesAndEverythingComesFromTheManifest() throws {
        let m = try Fixtures.manifest()
        XCTAssertEqual(m.schemaVersion, 2)
        XCTAssertEqual(m.target, "onnx")
        XCTAssertFalse(m.guidanceDistilled)
        XCTAssertEqual(m.classes.count, 10)
        XCTAssertEqual(m.classes[3], "cat")
        XCTAssertEqual(m.latentShape, [4, 4, 4])
        XCTAssertEqual(m.imageHeight, 32)
        XCTAssertEqual(m.defaultSteps, 8)
        XCTAssertEqual(m.defaultGuidance, 3.0)
        XCTAssertEqual(m.defaultMode, .fused)
        XCTAssertEqual(m.denoiseGraph.file, "a/denoise.onnx")
        XCTAssertEqual(m.encoderGraph?.file, "enc.onnx")
        XCTAssertEqual(try m.denoiseGraph.input(GraphRoles.timesteps).name, "ts")
        XCTAssertEqual(try m.denoiseGraph.output(GraphRoles.latent).name, "denoised")
        XCTAssertEqual(m.window.description, "K >= 1")
        XCTAssertEqual(m.files.count, 5)
        let g = try XCTUnwrap(m.golden)
        XCTAssertEqual(g.cases["generate_fused_8"]?.seed, UInt64.max)      // "18446744073709551615" read exactly
        XCTAssertEqual(g.cases["img2img_fused_8"]?.strength, 0.6)
        XCTAssertNil(g.cases["generate_stepwise_4"]?.strength)
        XCTAssertEqual(g.file("generate_fused_8", "image")?.tolerance?.bar, 40)
        XCTAssertEqual(m.storedTimesteps.keys.sorted(), [4, 8])
    }

    func expectError(_ fragment: String, file: StaticString = #filePath, line: UInt = #line, _ edit: (inout [String: Any]) -> Void) throws {
        var m = try Fixtures.sample()
        edit(&m)
        let text = try Fixtures.write(m)
        XCTAssertThrowsMessage(fragment, file: file, line: line) { _ = try Manifest.parse(text) }
    }

    func testSchemaVersions() throws {
        try expectError("bundle schema v1 is no longer supported by this runtime (schema v2); re-export it with lrf-export") {
            $0["schema_version"] = 1
        }
        try expectError("newer than this app supports") { $0["schema_version"] = 3 }
        try expectError("is this an LRF bundle") { $0["schema"] = "something-else" }
    }

    func testFieldErrorsSayExpectedAndGot() throws {
        try expectError("manifest.json: latent: missing (required)") { $0["latent"] = nil }
        try expectError("manifest.json: latent.height: expected int in 1..4096, got \"4\"") { $0[path: ["latent", "height"]] = "4" }
        try expectError("manifest.json: latent.width: expected int in 1..4096, got 5000") { $0[path: ["latent", "width"]] = 5000 }
        try expectError("manifest.json: sampling.steps: expected int in 1..1000, got 1001") { $0[path: ["sampling", "steps"]] = 1001 }
        try expectError("manifest.json: sampling.guidance: expected number in [0.0, 20.0]") { $0[path: ["sampling", "guidance"]] = 1e39 }
        try expectError("manifest.json: sampling.mode: expected one of [\"fused\", \"stepwise\"], got \"turbo\"") {
            $0[path: ["sampling", "mode"]] = "turbo"
        }
        try expectError("manifest.json: model.guidance_distilled: expected true or false, got nothing") {
            $0[path: ["model", "guidance_distilled"]] = nil
        }
        try expectError("manifest.json: model.guidance_distilled: expected true or false, got 1") {
            $0[path: ["model", "guidance_distilled"]] = 1
        }
        try expectError("manifest.json: classes: expected a list of 1..1000 distinct non-empty strings") {
            var c = $0["classes"] as! [Any]
            c[1] = "airplane"
            $0["classes"] = c
        }
        try expectError("manifest.json: null_class: expected int in 10..10, got 11") { $0["null_class"] = 11 }
        try expectError("manifest.json: image.height: expected int in 32..32, got 64") { $0[path: ["image", "height"]] = 64 }
        try expectError("64 lowercase hex digits") { $0[path: ["files", "enc.onnx", "sha256"]] = "ABC" }
        XCTAssertTrue(try Fixtures.manifest { $0[path: ["model", "guidance_distilled"]] = true }.guidanceDistilled)
    }

    func testFilesAndPaths() throws {
        try expectError("is not listed in 'files'") { $0[path: ["graphs", "denoise", "file"]] = "other.onnx" }
        try expectError("graphs.denoise.external_data[0]: 'a/denoise.onnx.data' is not listed in 'files'") {
            $0[path: ["graphs", "denoise", "external_data"]] = ["a/denoise.onnx.data"]
        }
        for bad in ["../denoise.onnx", "a/../../x", "/abs.onnx", "a//b", "./a", "c:x", "a\\b"] {
            try expectError("expected a relative path inside the bundle, got \"\(bad)\"") { $0[path: ["graphs", "denoise", "file"]] = bad }
        }
    }

    func testSchedulerAndRNG() throws {
        try expectError("scheduler.timesteps.8[1]: expected 0.875 (section 3 formula") {
            var ts = $0[path: ["scheduler", "timesteps", "8"]] as! [Any]
            ts[1] = 0.87
            $0[path: ["scheduler", "timesteps", "8"]] = ts
        }
        try expectError("scheduler.shift: expected 1.0 (= sampling.shift)") { $0[path: ["scheduler", "shift"]] = 3.0 }
        try expectError("rng.version: expected int in 1..1, got 2") { $0[path: ["rng", "version"]] = 2 }
    }

    func testGraphsRolesAndWindow() throws {
        try expectError("manifest.json: graphs.decoder: missing (required)") { $0[path: ["graphs", "decoder"]] = nil }
        XCTAssertNil(try Fixtures.manifest { $0[path: ["graphs", "encoder"]] = nil }.encoderGraph)
        try expectError("graphs.denoise.inputs: expected a tensor with role 'label', got roles [latent, timesteps, class, guidance]") {
            $0.setInList(["graphs", "denoise", "inputs"], 2, "role", "class")
        }
        try expectError("graphs.denoise.inputs 'y' (role label): expected int32 of rank 1, got float32 [batch]") {
            $0.setInList(["graphs", "denoise", "inputs"], 2, "dtype", "float32")
        }
        try expectError("role 'latent' appears twice") { $0.setInList(["graphs", "denoise", "inputs"], 1, "role", "latent") }
        try expectError("graphs.decoder.outputs 'rgb' (role image): expected float32 of rank 4, got uint8") {
            $0[path: ["image", "format"]] = "float_nchw"
        }
        try expectError("graphs.denoise.inputs 'z_in' (role latent): expected shape [B, 4, 8, 4] (the manifest's latent)") {
            $0[path: ["latent", "height"]] = 8
            $0[path: ["image", "height"]] = 64
        }
        try expectError("graphs.denoise.window: missing (required)") { $0[path: ["graphs", "denoise", "window"]] = nil }
        try expectError("(role timesteps): expected shape [-1] (window.max + 1), got [3]") {
            $0.setInList(["graphs", "denoise", "inputs"], 1, "shape", [3])
        }
        let fixed = try Fixtures.manifest {
            $0[path: ["graphs", "denoise", "window"]] = ["min": 2, "max": 2]
            $0.setInList(["graphs", "denoise", "inputs"], 1, "shape", [3])
        }
        XCTAssertEqual(fixed.window.description, "K = 2")
    }

    func testGoldenEntries() throws {
        try expectError("golden.cases.generate_fused_8.seed: expected a uint64 seed as a decimal string, got 5") {
            $0[path: ["golden", "cases", "generate_fused_8", "seed"]] = 5
        }
        for bad in ["18446744073709551616", "-1", "007", "", "1e3"] {
            try expectError("seed: expected a uint64 seed as a decimal string, got \"\(bad)\"") {
                $0[path: ["golden", "cases", "generate_fused_8", "seed"]] = bad
            }
        }
        try expectError("golden.files.image_generate_fused_8.tolerance: missing (every golden.files entry has") {
            $0[path: ["golden", "files", "image_generate_fused_8", "tolerance"]] = nil
        }
        try expectError("golden.files.image_generate_fused_8.case: expected one of the golden.cases ids") {
            $0[path: ["golden", "files", "image_generate_fused_8", "case"]] = "nope"
        }
        // the exporter's spellings: "modes" in the case, the mode in the file's content
        let g = try XCTUnwrap(try Fixtures.manifest {
            $0[path: ["golden", "cases", "generate_fused_8", "mode"]] = nil
            $0[path: ["golden", "cases", "generate_fused_8", "modes"]] = ["stepwise", "fused"]
            $0[path: ["golden", "files", "image_generate_fused_8", "content"]] = "image_fused"
        }.golden)
        XCTAssertEqual(g.cases["generate_fused_8"]?.mode, .stepwise)
        XCTAssertEqual(g.files["image_generate_fused_8"]?.content, "image")
        XCTAssertEqual(g.files["image_generate_fused_8"]?.mode, .fused)
    }

    // --- BundleVerifier and containment: tampered bundles built here, in a temp dir, one per case

    /// A fresh bundle folder whose files and checksums agree with its manifest.
    func makeBundle() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lrf-bundle-\(UUID().uuidString)")
        var m = try Fixtures.sample()
        let files = m["files"] as! [String: Any]
        for rel in files.keys {
            let url = dir.appendingPathComponent(rel)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let data = Data("content of \(rel)".utf8)
            try data.write(to: url)
            m[path: ["files", rel]] = ["size": data.count, "sha256": SHA256Hex.of(data)] as [String: Any]
        }
        try Data(try Fixtures.write(m).utf8).write(to: dir.appendingPathComponent(Manifest.fileName))
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func load(_ dir: URL) throws -> Manifest { try BundleVerifier.load(DirectorySource(root: dir)) }

    func testVerifierChecksEveryFile() throws {
        let dir = try makeBundle()
        var seen: [String] = []
        let m = try BundleVerifier.load(DirectorySource(root: dir)) { _, _, path in seen.append(path) }
        XCTAssertEqual(seen, m.files.keys.sorted())
        XCTAssertEqual(try DirectorySource(root: dir).list(), (Array(m.files.keys) + [Manifest.fileName, "a/", "golden/"]).sorted())
    }

    func testCorruptTruncatedMissingFilesAreNamed() throws {
        // each case on its own fresh bundle, so each expects exactly the error it causes
        let corrupt = try makeBundle()
        let step = corrupt.appendingPathComponent("a/denoise.onnx")
        var bytes = [UInt8](try Data(contentsOf: step))
        bytes[0] = bytes[0] &+ 1
        try Data(bytes).write(to: step)
        XCTAssertThrowsMessage("bundle file a/denoise.onnx: sha256 mismatch") { _ = try self.load(corrupt) }

        let truncated = try makeBundle()
        try Data([0, 0]).write(to: truncated.appendingPathComponent("enc.onnx"))
        XCTAssertThrowsMessage("bundle file enc.onnx: size 2 bytes") { _ = try self.load(truncated) }
        XCTAssertEqual(try BundleVerifier.load(DirectorySource(root: truncated), verify: false).defaultSteps, 8)

        let missing = try makeBundle()
        try FileManager.default.removeItem(at: missing.appendingPathComponent("golden/timesteps_generate_fused_8.f32"))
        XCTAssertThrowsMessage("is missing golden/timesteps_generate_fused_8.f32") { _ = try self.load(missing) }

        let noManifest = try makeBundle()
        try FileManager.default.removeItem(at: noManifest.appendingPathComponent(Manifest.fileName))
        XCTAssertThrowsMessage("has no manifest.json") { _ = try self.load(noManifest) }
    }

    func testUnlistedFilesAreRefusedByName() throws {
        let dir = try makeBundle()
        try Data(count: 16).write(to: dir.appendingPathComponent("a/denoise.onnx.data"))
        XCTAssertThrowsMessage("bundle file 'a/denoise.onnx.data' is not listed in manifest.json; a bundle holds only") { _ = try self.load(dir) }
        let ds = try makeBundle()
        try Data(count: 4).write(to: ds.appendingPathComponent("golden/.DS_Store"))
        XCTAssertThrowsMessage("bundle file 'golden/.DS_Store' is not listed in manifest.json") { _ = try self.load(ds) }
        let empty = try makeBundle()
        try FileManager.default.createDirectory(at: empty.appendingPathComponent("cache"), withIntermediateDirectories: true)
        XCTAssertThrowsMessage("bundle file 'cache/' is not listed in manifest.json") { _ = try self.load(empty) }
    }

    /// A file outside the bundle with the bytes of a listed file, so only containment can catch it.
    func outsideCopy(_ dir: URL, _ rel: String) throws -> URL {
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("lrf-outside-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: outside) }
        let target = outside.appendingPathComponent("secret")
        try Data(contentsOf: dir.appendingPathComponent(rel)).write(to: target)
        return target
    }

    func testSymlinksAreRefusedWithoutSayingWhereTheyPoint() throws {
        let dir = try makeBundle()
        let target = try outsideCopy(dir, "a/denoise.onnx")
        try FileManager.default.removeItem(at: dir.appendingPathComponent("a/denoise.onnx"))
        try FileManager.default.createSymbolicLink(at: dir.appendingPathComponent("a/denoise.onnx"), withDestinationURL: target)
        do {
            _ = try load(dir)
            XCTFail("a symlinked graph must be refused")
        } catch {
            XCTAssertTrue("\(error)".contains("bundle file 'a/denoise.onnx' is a symbolic link"), "\(error)")
            XCTAssertFalse("\(error)".contains(target.deletingLastPathComponent().lastPathComponent), "\(error)")
        }
        XCTAssertThrowsMessage("symbolic link") { _ = try DirectorySource(root: dir).readData("a/denoise.onnx") }

        let golden = try makeBundle()
        let outside = FileManager.default.temporaryDirectory.appendingPathComponent("lrf-outside-golden-\(UUID().uuidString)")
        try FileManager.default.moveItem(at: golden.appendingPathComponent("golden"), to: outside)
        addTeardownBlock { try? FileManager.default.removeItem(at: outside) }
        try FileManager.default.createSymbolicLink(at: golden.appendingPathComponent("golden"), withDestinationURL: outside)
        XCTAssertThrowsMessage("bundle file 'golden' is a symbolic link") { _ = try self.load(golden) }
        XCTAssertThrowsMessage("is (or is inside) a symbolic link") {
            _ = try DirectorySource(root: golden).readData("golden/timesteps_generate_fused_8.f32")
        }

        let manifest = try makeBundle()
        let mTarget = try outsideCopy(manifest, Manifest.fileName)
        try FileManager.default.removeItem(at: manifest.appendingPathComponent(Manifest.fileName))
        try FileManager.default.createSymbolicLink(at: manifest.appendingPathComponent(Manifest.fileName), withDestinationURL: mTarget)
        XCTAssertThrowsMessage("bundle file 'manifest.json' is (or is inside) a symbolic link") { _ = try self.load(manifest) }
    }

    func testBadRelativePathsAreRefusedByTheSource() throws {
        let dir = try makeBundle()
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//denoise.onnx", "./manifest.json"] {
            XCTAssertThrowsMessage("must be relative") { _ = try DirectorySource(root: dir).readData(bad) }
        }
    }

    func testStreamedSHA256() throws {
        XCTAssertEqual(SHA256Hex.of(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256Hex.of(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // a file of several 64 KiB chunks hashes as one shot
        let dir = try makeBundle()
        let big = Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try big.write(to: dir.appendingPathComponent("enc.onnx"))
        let (hex, size) = try SHA256Hex.of(DirectorySource(root: dir), "enc.onnx")
        XCTAssertEqual(hex, SHA256Hex.of(big))
        XCTAssertEqual(size, 200_000)
    }
}
