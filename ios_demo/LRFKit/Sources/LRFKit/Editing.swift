import Foundation

/// The editing rules (img2img and inpainting), in ONE place: a mirror of Editing.kt and of
/// lrf/editing.py, which runtime/BUNDLE.md section 8 points to; pinned by the cross-language
/// golden vectors ("editing" in golden_vectors.json) and by a bundle's edit golden cases.
///
///     i0     = startIndex(t, strength): the i minimising |t_i - strength| (float64);
///              a tie goes to the larger i (smaller t: fewer steps)
///     window = t[i0...N]                 (strength 1 -> i0 = 0, strength 0 -> i0 = N)
///     z      = noised(zImg, noise, t_i0) = (1 - t) * zImg + t * noise   (float32)
///     inpaint: after each step, at the new time t: z = keep ? noised(zImg, noise, t) : z
///     keep   = latentKeepMask(mask): a latent cell is kept only if every pixel of its
///              f x f block is kept (a pixel is kept when its 8-bit value is >= 128)
///
/// The mask is a KEEP mask: 255 / white keeps the input, 0 / black is repainted.
public enum Editing {
    public static func checkStrength(_ strength: Double) throws -> Double {
        guard !strength.isNaN, strength >= 0, strength <= 1 else {
            throw LRFError.invalid("strength must be a number in [0, 1] (0 keeps the image, 1 ignores it), got \(strength)")
        }
        return strength
    }

    /// The schedule index an edit starts at: the nearest t to `strength`, ties to the smaller t.
    public static func startIndex(_ ts: [Float], strength: Double) throws -> Int {
        _ = try checkStrength(strength)
        var best = 0
        var bestD = Double.infinity
        for i in ts.indices {
            let d = abs(Double(ts[i]) - strength)
            if d <= bestD {                      // <=: a tie moves to the later index
                best = i
                bestD = d
            }
        }
        return best
    }

    /// (1 - t) zImg + t noise in float32 (t = 1 gives the noise exactly, t = 0 zImg).
    public static func noised(_ zImg: [Float], _ noise: [Float], t: Float) throws -> [Float] {
        guard zImg.count == noise.count else {
            throw LRFError.invalid("image latent has \(zImg.count) values but the noise has \(noise.count)")
        }
        let a: Float = 1 - t
        return (0..<zImg.count).map { a * zImg[$0] + t * noise[$0] }
    }

    /// Inpainting after a step to time `t`, in place: kept cells take the input re-noised to t.
    /// `keep` is [h * w] row-major, broadcast over the channel planes of one latent.
    public static func blend(_ z: inout [Float], _ zImg: [Float], _ noise: [Float], t: Float, keep: [Bool]) throws {
        guard z.count == zImg.count, z.count == noise.count else {
            throw LRFError.invalid("latents differ in size: \(z.count), \(zImg.count), \(noise.count)")
        }
        guard !keep.isEmpty, z.count % keep.count == 0 else {
            throw LRFError.invalid("keep mask of \(keep.count) cells does not tile a latent of \(z.count)")
        }
        let a: Float = 1 - t
        for k in 0..<z.count where keep[k % keep.count] { z[k] = a * zImg[k] + t * noise[k] }
    }

    /// A pixel keep mask (`height` x `width` 8-bit values, row-major; >= 128 kept) -> the latent
    /// keep mask: a cell is kept only if all f x f pixels it covers are kept.
    public static func latentKeepMask(_ mask: [UInt8], height: Int, width: Int, factor: Int = 8) throws -> [Bool] {
        guard height >= factor, width >= factor, height % factor == 0, width % factor == 0 else {
            throw LRFError.invalid("image is \(width)x\(height); width and height must be positive multiples of \(factor): crop or resize it")
        }
        guard mask.count == height * width else {
            throw LRFError.invalid("mask has \(mask.count) pixels but the image is \(width)x\(height); give a mask of the image's size")
        }
        let w = width / factor
        var out = [Bool](repeating: true, count: (height / factor) * w)
        for y in 0..<height {
            for x in 0..<width where mask[y * width + x] < 128 { out[(y / factor) * w + x / factor] = false }
        }
        return out
    }
}
