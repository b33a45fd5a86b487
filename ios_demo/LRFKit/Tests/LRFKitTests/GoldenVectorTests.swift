import XCTest
@testable import LRFKit

/// Mirror of PrngTest.kt, ScheduleTest.kt, PixelsTest.kt and EditingTest.kt on the same golden vectors.
final class GoldenVectorTests: XCTestCase {
    func cases() throws -> [JSONObj] { try Fixtures.golden().obj("prng").objList("cases") }

    func testSpecMatchesGolden() throws {
        let prng = try Fixtures.golden().obj("prng")
        XCTAssertEqual(PRNG.specName, try prng.string("name"))
        XCTAssertEqual(PRNG.specVersion, try prng.int("version"))
        XCTAssertGreaterThanOrEqual(try cases().count, 4)
    }

    func testWordsAreBitExact() throws {
        for c in try cases() {
            let seedText = try c.string("seed")
            let seed = try PRNG.parseSeed(seedText)
            let got = PRNG.words(seed: seed, count: try c.int("n")).map(Fixtures.hex16)
            XCTAssertEqual(got, try c.stringList("words"), "seed \(seedText)")
        }
    }

    func testUniformsAreBitExact() throws {
        for c in try cases() {
            let seed = try PRNG.parseSeed(try c.string("seed"))
            XCTAssertEqual(Fixtures.bitsOf(PRNG.uniform(seed: seed, count: try c.int("n"))), try c.stringList("uniform_bits"))
        }
    }

    func testNormalsWithin1e6() throws {
        var exact = 0, total = 0
        for c in try cases() {
            let seedText = try c.string("seed")
            let seed = try PRNG.parseSeed(seedText)
            let want = Fixtures.floatBits(try c.stringList("normal_bits"))
            let got = PRNG.normal(seed: seed, count: try c.int("n"))
            XCTAssertEqual(want.count, got.count)
            for i in want.indices {
                XCTAssertLessThanOrEqual(abs(want[i] - got[i]), 1e-6, "normal \(i) of seed \(seedText)")
                if want[i].bitPattern == got[i].bitPattern { exact += 1 }
                total += 1
            }
        }
        print("GoldenVectorTests: \(exact) of \(total) normals bit-exact with numpy, all within 1e-6")
    }

    func testNoiseIsRowMajorNormalStream() throws {
        let n = try PRNG.noise(seed: 42, shape: [4, 4, 4])
        XCTAssertEqual(n.count, 64)
        XCTAssertEqual(Fixtures.bitsOf(n), Fixtures.bitsOf(PRNG.normal(seed: 42, count: 64)))
        XCTAssertNotEqual(Fixtures.bitsOf(n), Fixtures.bitsOf(try PRNG.noise(seed: 43, shape: [4, 4, 4])))
    }

    func testSeedParsing() throws {
        XCTAssertEqual(try PRNG.parseSeed("0"), 0)
        XCTAssertEqual(try PRNG.parseSeed("18446744073709551615"), UInt64.max)
        for bad in ["", "-1", "18446744073709551616", "1.5", "abc", "0x10"] {
            XCTAssertThrowsMessage("2^64") { _ = try PRNG.parseSeed(bad) }
        }
    }

    func testTimestepsAreBitExact() throws {
        let cases = try Fixtures.golden().obj("schedule").objList("cases")
        XCTAssertGreaterThanOrEqual(cases.count, 6)
        for c in cases {
            let steps = try c.int("steps")
            let shift = try c.double("shift")
            let got = try Schedule.timesteps(steps: steps, shift: shift)
            XCTAssertEqual(Fixtures.bitsOf(got), try c.stringList("timestep_bits"), "steps=\(steps) shift=\(shift)")
        }
    }

    func testEulerTrajectoryIsBitExact() throws {
        let e = try Fixtures.golden().obj("euler")
        let n = try e.int("n")
        var z = PRNG.normal(seed: try PRNG.parseSeed(try e.string("latent_seed")), count: n)
        let v = PRNG.normal(seed: try PRNG.parseSeed(try e.string("velocity_seed")), count: n)
        let steps = try e.int("steps")
        let ts = try Schedule.timesteps(steps: steps, shift: try e.double("shift"))
        for i in 0..<steps {
            let scale = Float(1) + Float(i)
            try Schedule.eulerStep(&z, v.map { $0 * scale }, t: ts[i], tNext: ts[i + 1])
        }
        XCTAssertEqual(Fixtures.bitsOf(z), try e.stringList("result_bits"))
    }

    func testScheduleRejectsBadArguments() {
        XCTAssertThrowsMessage("steps must be >= 1") { _ = try Schedule.timesteps(steps: 0, shift: 1) }
        for shift in [0.0, -1.0, Double.nan, Double.infinity] {
            XCTAssertThrowsMessage("shift") { _ = try Schedule.timesteps(steps: 8, shift: shift) }
        }
        var z: [Float] = [0, 0, 0]
        XCTAssertThrowsMessage("velocity") { try Schedule.eulerStep(&z, [0, 0, 0, 0], t: 1, tNext: 0) }
    }

    func testFloatCHWMatchesPythonRounding() throws {
        let p = try Fixtures.golden().obj("pixels")
        let h = try p.int("height"), w = try p.int("width")
        let x = Fixtures.floatBits(try p.stringList("float_chw_bits"))
        let rgb = try p.intList("rgb_hwc")
        let argb = try Pixels.argbFromFloatCHW(x, height: h, width: w)
        for i in 0..<(h * w) {
            let r = UInt32(rgb[3 * i]) << 16
            let g = UInt32(rgb[3 * i + 1]) << 8
            let want: UInt32 = 0xFF00_0000 | r | g | UInt32(rgb[3 * i + 2])
            XCTAssertEqual(argb[i], want, "pixel \(i)")
        }
    }

    func testRGBBytesPackIntoARGB() throws {
        let bytes: [UInt8] = [0, 0, 0, 255, 128, 1, 10, 20, 30, 255, 255, 255]
        XCTAssertEqual(try Pixels.argbFromRGBBytes(bytes, height: 2, width: 2), [0xFF00_0000, 0xFFFF_8001, 0xFF0A_141E, 0xFFFF_FFFF])
        XCTAssertEqual(try Pixels.argbFromRGBBytes(bytes + [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], height: 2, width: 2, offset: 12)[0], 0xFF01_0203)
        XCTAssertEqual(Pixels.byteValue(-1), 0)
        XCTAssertEqual(Pixels.byteValue(0), 128)
        XCTAssertEqual(Pixels.byteValue(1), 255)
        XCTAssertEqual(Pixels.byteValue(.nan), 0)
        XCTAssertThrowsMessage("needs 12 values, got 11") { _ = try Pixels.argbFromFloatCHW([Float](repeating: 0, count: 11), height: 2, width: 2) }
    }

    func testPixelHelpers() throws {
        let argb: [UInt32] = [0xFF0A_141E, 0x80FF_8001]
        XCTAssertEqual(Pixels.rgbBytes(fromARGB: argb), [10, 20, 30, 255, 128, 1])
        XCTAssertEqual(Pixels.gray(fromARGB: argb), [20, 128])
        let x = try Pixels.floatCHW(fromRGBBytes: [0, 127, 255, 10, 20, 30], height: 1, width: 2)
        XCTAssertEqual(x, [-1, Float(10) / 127.5 - 1, Float(127) / 127.5 - 1, Float(20) / 127.5 - 1, 1, Float(30) / 127.5 - 1])
        let all: [UInt8] = (0..<(256 * 3)).map { UInt8($0 / 3) }
        let back = try Pixels.argbFromFloatCHW(try Pixels.floatCHW(fromRGBBytes: all, height: 1, width: 256), height: 1, width: 256)
        XCTAssertEqual(Pixels.rgbBytes(fromARGB: back), all)                  // the decoder's rule inverts it exactly
        let landscape = try Pixels.centerCrop(srcWidth: 1280, srcHeight: 720, dstWidth: 32, dstHeight: 32)
        XCTAssertEqual([landscape.x, landscape.y, landscape.width, landscape.height], [280, 0, 720, 720])
        let portrait = try Pixels.centerCrop(srcWidth: 720, srcHeight: 1280, dstWidth: 32, dstHeight: 32)
        XCTAssertEqual([portrait.x, portrait.y, portrait.width, portrait.height], [0, 280, 720, 720])
        let wide = try Pixels.centerCrop(srcWidth: 100, srcHeight: 100, dstWidth: 64, dstHeight: 32)
        XCTAssertEqual([wide.x, wide.y, wide.width, wide.height], [0, 25, 100, 50])
    }

    // --- editing rules against lrf/editing.py ("editing" in golden_vectors.json) -------------

    func testEditStartIndexMatchesPythonIncludingTies() throws {
        let cases = try Fixtures.golden().obj("editing").objList("start")
        XCTAssertGreaterThanOrEqual(cases.count, 30)
        for c in cases {
            let steps = try c.int("steps"), strength = try c.double("strength")
            let ts = try Schedule.timesteps(steps: steps, shift: try c.double("shift"))
            XCTAssertEqual(try Editing.startIndex(ts, strength: strength), try c.int("start_index"), "N=\(steps) strength=\(strength)")
        }
        XCTAssertEqual(try Editing.startIndex(try Schedule.timesteps(steps: 8, shift: 1), strength: 0.0625), 8)   // exact tie: smaller t
    }

    func testEditNoisedBlendAndMaskAreBitExact() throws {
        let e = try Fixtures.golden().obj("editing")
        let n = try e.int("n")
        let zImg = PRNG.normal(seed: try PRNG.parseSeed(try e.string("z_img_seed")), count: n)
        let noise = PRNG.normal(seed: try PRNG.parseSeed(try e.string("noise_seed")), count: n)
        for c in try e.objList("noised") {
            let t = Fixtures.floatBits([try c.string("t_bits")])[0]
            XCTAssertEqual(Fixtures.bitsOf(try Editing.noised(zImg, noise, t: t)), try c.stringList("result_bits"), "t=\(t)")
        }
        let b = try e.obj("blend")
        var z = PRNG.normal(seed: try PRNG.parseSeed(try b.string("latent_seed")), count: n)
        let keep = try b.list("keep").map { $0 as! Bool }
        try Editing.blend(&z, zImg, noise, t: Fixtures.floatBits([try b.string("t_bits")])[0], keep: keep)
        XCTAssertEqual(Fixtures.bitsOf(z), try b.stringList("result_bits"))
        for c in try e.objList("masks") {
            let mask = try c.intList("mask").map { UInt8($0) }
            let want = try c.list("keep").map { $0 as! Bool }
            XCTAssertEqual(try Editing.latentKeepMask(mask, height: try c.int("height"), width: try c.int("width")), want)
        }
        XCTAssertThrowsMessage("strength must be a number in [0, 1]") { _ = try Editing.startIndex([1, 0], strength: 1.5) }
        XCTAssertThrowsMessage("must be positive multiples of 8") { _ = try Editing.latentKeepMask([UInt8](repeating: 0, count: 96), height: 12, width: 8) }
    }
}
