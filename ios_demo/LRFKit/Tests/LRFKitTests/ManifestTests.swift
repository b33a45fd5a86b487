import XCTest
@testable import LRFKit

/// Mirror of JsonTest.kt, ManifestTest.kt and BundleVerifierTest.kt.
final class ManifestTests: XCTestCase {
    func testJSONParsesAllValueKinds() throws {
        let v = try JSON.parse(#"{"a": [1, -2.5e3, "x\"\u00e9\n", true, false, null], "b": {}, "c": 18446744073709551621}"#) as! JSON.Object
        let a = v.values["a"]!! as! [Any?]
        XCTAssertEqual(a[0] as? JSONNumber, JSONNumber("1"))
        XCTAssertEqual((a[1] as! JSONNumber).doubleValue, -2500)
        XCTAssertEqual(a[2] as? String, "x\"\u{e9}\n")
        XCTAssertEqual(a[3] as? Bool, true)
        XCTAssertEqual(a[4] as? Bool, false)
        XCTAssertNil(a[5] ?? nil)
        XCTAssertEqual((v.values["c"]!! as! JSONNumber).text, "18446744073709551621")
        XCTAssertEqual(v.keys, ["a", "b", "c"])
    }

    func testJSONRejectsMalformedInput() {
        for text in ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "tru", "\"abc", "{\"a\" 1}", "[1] x", "{\"a\":1,\"a\":2}", "\"\\q\"", "-"] {
            XCTAssertThrowsMessage("invalid JSON at offset") { _ = try JSON.parse(text) }
        }
    }

    func testTypedAccessNamesThePath() throws {
        let o = try JSONObj.parse(#"{"graphs": {"step": {"inputs": [{"shape": "oops"}]}}}"#, source: "manifest.json")
        XCTAssertThrowsMessage("manifest.json: graphs.step.inputs[0].shape: expected a list") {
            _ = try o.obj("graphs").obj("step").objList("inputs")[0].intList("shape")
        }
        XCTAssertThrowsMessage("manifest.json: name: missing (required)") { _ = try o.string("name") }
    }

    func testSampleParsesAndEverythingComesFromTheManifest() throws {
        let m = try Manifest.parse(try Fixtures.text("sample_manifest.json"))
        XCTAssertEqual(m.schemaVersion, 1)
        XCTAssertEqual(m.target, "onnx")
        XCTAssertEqual(m.classes.count, 10)
        XCTAssertEqual(m.classes[3], "cat")
        XCTAssertEqual(m.latentShape, [4, 4, 4])
        XCTAssertEqual(m.imageHeight, 32)
        XCTAssertEqual(m.defaultSteps, 8)
        XCTAssertEqual(m.defaultGuidance, 3.0)
        XCTAssertEqual(m.fusedSteps, [8])
        XCTAssertEqual(try m.graph(Manifest.step).file, "a/step.onnx")
        XCTAssertEqual(m.fusedGraph(steps: 8)?.file, "gen8.onnx")
        XCTAssertNil(m.fusedGraph(steps: 50))
        XCTAssertEqual(try m.graph("step").inputs.map { $0.name }, ["latent", "t", "label", "guidance"])
        XCTAssertEqual(try m.graph("step").inputs[0].describe(), "[batch, 4, 4, 4]")
        XCTAssertEqual(m.files.count, 4)
        XCTAssertEqual(m.golden?.seed, UInt64.max)
        XCTAssertEqual(m.golden?.imagePsnrDb, 40)
    }

    func expectError(_ fragment: String, file: StaticString = #filePath, line: UInt = #line, _ edit: (inout JSON.Object) -> Void) throws {
        var m = try Fixtures.sample()
        edit(&m)
        XCTAssertThrowsMessage(fragment, file: file, line: line) { _ = try Manifest.parse(Fixtures.write(m)) }
    }

    func testBadManifests() throws {
        try expectError("newer than this app supports") { $0[path: ["schema_version"]] = JSONNumber("2") }
        try expectError("is this an LRF bundle") { $0[path: ["schema"]] = "something-else" }
        try expectError("manifest.json: latent: missing (required)") { $0.remove("latent") }
        try expectError("is not listed in 'files'") { $0[path: ["graphs", "step", "file"]] = "other.onnx" }
        try expectError("must be relative and inside the bundle") { $0[path: ["graphs", "step", "file"]] = "../step.onnx" }
        try expectError("differ from this app's scheduler") {
            var ts = $0[path: ["scheduler", "timesteps", "8"]] as! [Any?]
            ts[1] = JSONNumber("0.87")
            $0[path: ["scheduler", "timesteps", "8"]] = ts
        }
        try expectError("differ from this app's scheduler") { $0[path: ["scheduler", "shift"]] = JSONNumber("3.0") }
        try expectError("no graph 'generator_50'") { $0[path: ["fused_steps"]] = [JSONNumber("8"), JSONNumber("50")] as [Any?] }
        try expectError("no 'decoder' graph") {
            var graphs = $0[path: ["graphs"]] as! JSON.Object
            graphs.remove("decoder")
            $0[path: ["graphs"]] = graphs
        }
        try expectError("dtype 'float16' is not one of") { m in
            var inputs = m[path: ["graphs", "step", "inputs"]] as! [Any?]
            var t = inputs[1] as! JSON.Object
            t[path: ["dtype"]] = "float16"
            inputs[1] = t
            m[path: ["graphs", "step", "inputs"]] = inputs
        }
        try expectError("(the label) must be") { m in
            var inputs = m[path: ["graphs", "step", "inputs"]] as! [Any?]
            var t = inputs[2] as! JSON.Object
            t[path: ["dtype"]] = "float32"
            inputs[2] = t
            m[path: ["graphs", "step", "inputs"]] = inputs
        }
        try expectError("has shape [batch, 4, 4, 4] but the manifest's latent is [4, 8, 4]") { $0[path: ["latent", "height"]] = JSONNumber("8") }
        try expectError("is not the one this app implements") { $0[path: ["rng", "version"]] = JSONNumber("2") }
        try expectError("64 lower-case hex digits") { $0[path: ["files", "gen8.onnx", "sha256"]] = "ABC" }
    }

    /// A bundle folder whose files and checksums agree with its manifest.
    func makeBundle() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lrf-bundle-\(UUID().uuidString)")
        var m = try Fixtures.sample()
        let files = m[path: ["files"]] as! JSON.Object
        for rel in files.keys {
            let url = dir.appendingPathComponent(rel)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let data = Data("content of \(rel)".utf8)
            try data.write(to: url)
            var entry = JSON.Object()
            entry[path: ["size"]] = JSONNumber(String(data.count))
            entry[path: ["sha256"]] = SHA256Hex.of(data)
            m[path: ["files", rel]] = entry
        }
        try Data(Fixtures.write(m).utf8).write(to: dir.appendingPathComponent(Manifest.fileName))
        return dir
    }

    func testVerifierChecksEveryFile() throws {
        let dir = try makeBundle()
        var seen: [String] = []
        let m = try BundleVerifier.load(DirectorySource(root: dir)) { _, _, path in seen.append(path) }
        XCTAssertEqual(seen, m.files.keys.sorted())

        let step = dir.appendingPathComponent("a/step.onnx")
        var bytes = [UInt8](try Data(contentsOf: step))
        bytes[0] = bytes[0] &+ 1
        try Data(bytes).write(to: step)
        XCTAssertThrowsMessage("bundle file a/step.onnx: sha256 mismatch") { _ = try BundleVerifier.load(DirectorySource(root: dir)) }

        try Data([0, 0]).write(to: dir.appendingPathComponent("gen8.onnx"))
        XCTAssertEqual(try BundleVerifier.load(DirectorySource(root: dir), verify: false).defaultSteps, 8)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("golden/timesteps.f32"))
        XCTAssertThrowsMessage("is missing golden/timesteps.f32") { _ = try BundleVerifier.load(DirectorySource(root: dir)) }
        try FileManager.default.removeItem(at: dir.appendingPathComponent(Manifest.fileName))
        XCTAssertThrowsMessage("has no manifest.json") { _ = try BundleVerifier.load(DirectorySource(root: dir)) }
    }

    func testSHA256KnownDigests() {
        XCTAssertEqual(SHA256Hex.of(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256Hex.of(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
