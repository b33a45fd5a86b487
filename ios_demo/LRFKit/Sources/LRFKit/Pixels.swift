import Foundation

/// Image tensors -> ARGB_8888 pixels as UInt32 0xAARRGGBB (mirror of Pixels.kt).
public enum Pixels {
    static let opaque: UInt32 = 0xFF00_0000

    /// One value in [-1, 1] -> 0..255: floor((clamp(x) + 1) * 127.5 + 0.5) in float32 (round
    /// half up, as models/reference.py `to_uint8`). NaN maps to 0.
    public static func byteValue(_ x: Float) -> UInt32 {
        if x.isNaN { return 0 }
        let c: Float = x < -1 ? -1 : (x > 1 ? 1 : x)
        let v = Int(((c + 1) * 127.5 + 0.5).rounded(.down))
        return UInt32(v < 0 ? 0 : (v > 255 ? 255 : v))
    }

    /// uint8 NHWC image ([height, width, 3], one image) -> ARGB, row-major.
    public static func argbFromRGBBytes(_ rgb: [UInt8], height: Int, width: Int, offset: Int = 0) throws -> [UInt32] {
        try checkSize(rgb.count - offset, height, width, "uint8 [H,W,3] image")
        var out = [UInt32](repeating: 0, count: height * width)
        for p in 0..<out.count {
            let base = offset + 3 * p
            let r = UInt32(rgb[base]) << 16
            let g = UInt32(rgb[base + 1]) << 8
            let b = UInt32(rgb[base + 2])
            out[p] = opaque | r | g | b
        }
        return out
    }

    /// float32 NCHW image ([3, height, width] in [-1, 1], one image) -> ARGB, row-major.
    public static func argbFromFloatCHW(_ x: [Float], height: Int, width: Int, offset: Int = 0) throws -> [UInt32] {
        try checkSize(x.count - offset, height, width, "float [3,H,W] image")
        let plane = height * width
        var out = [UInt32](repeating: 0, count: plane)
        for p in 0..<plane {
            let r = byteValue(x[offset + p])
            let g = byteValue(x[offset + plane + p])
            let b = byteValue(x[offset + 2 * plane + p])
            out[p] = opaque | (r << 16) | (g << 8) | b
        }
        return out
    }

    static func checkSize(_ available: Int, _ height: Int, _ width: Int, _ what: String) throws {
        guard height > 0, width > 0 else { throw LRFError.invalid("image size must be positive, got \(height)x\(width)") }
        guard available >= 3 * height * width else {
            throw LRFError.invalid("\(what) of \(height)x\(width) needs \(3 * height * width) values, got \(available)")
        }
    }
}
