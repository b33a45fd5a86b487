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

    /// ARGB words -> RGB bytes [H, W, 3] (what the encoder graph takes); alpha is dropped.
    public static func rgbBytes(fromARGB argb: [UInt32]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: argb.count * 3)
        for p in 0..<argb.count {
            out[3 * p] = UInt8((argb[p] >> 16) & 0xFF)
            out[3 * p + 1] = UInt8((argb[p] >> 8) & 0xFF)
            out[3 * p + 2] = UInt8(argb[p] & 0xFF)
        }
        return out
    }

    /// RGB bytes [H, W, 3] -> float32 [3, H, W] in [-1, 1]: what a `float_nchw` (Core ML) bundle's
    /// encoder takes: v / 127.5 - 1 in float32, as exporter/wrappers.py `uint8_nhwc_to_image`.
    public static func floatCHW(fromRGBBytes rgb: [UInt8], height: Int, width: Int) throws -> [Float] {
        try checkSize(rgb.count, height, width, "uint8 [H,W,3] image")
        let plane = height * width
        var out = [Float](repeating: 0, count: 3 * plane)
        for p in 0..<plane {
            for c in 0..<3 { out[c * plane + p] = Float(rgb[3 * p + c]) / 127.5 - 1 }
        }
        return out
    }

    /// A gray image decoded to ARGB (r = g = b) -> its 8-bit values (the green channel).
    public static func gray(fromARGB argb: [UInt32]) -> [UInt8] { argb.map { UInt8(($0 >> 8) & 0xFF) } }

    /// The centred crop of a photo with the aspect ratio of dstWidth x dstHeight, as
    /// (x, y, width, height): what the app cuts before scaling a picked photo (mirror of Pixels.kt).
    public static func centerCrop(srcWidth: Int, srcHeight: Int, dstWidth: Int, dstHeight: Int) throws -> (x: Int, y: Int, width: Int, height: Int) {
        guard srcWidth > 0, srcHeight > 0, dstWidth > 0, dstHeight > 0 else {
            throw LRFError.invalid("sizes must be positive, got \(srcWidth)x\(srcHeight) -> \(dstWidth)x\(dstHeight)")
        }
        if Int64(srcWidth) * Int64(dstHeight) > Int64(srcHeight) * Int64(dstWidth) {
            let w = Int(max(1, Int64(srcHeight) * Int64(dstWidth) / Int64(dstHeight)))
            return ((srcWidth - w) / 2, 0, w, srcHeight)
        }
        let h = Int(max(1, Int64(srcWidth) * Int64(dstHeight) / Int64(dstWidth)))
        return (0, (srcHeight - h) / 2, srcWidth, h)
    }

    static func checkSize(_ available: Int, _ height: Int, _ width: Int, _ what: String) throws {
        guard height > 0, width > 0 else { throw LRFError.invalid("image size must be positive, got \(height)x\(width)") }
        guard available >= 3 * height * width else {
            throw LRFError.invalid("\(what) of \(height)x\(width) needs \(3 * height * width) values, got \(available)")
        }
    }
}
