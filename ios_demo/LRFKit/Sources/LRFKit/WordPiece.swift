import Foundation

/// BERT WordPiece uncased, exactly as runtime/TOKENIZER.md specifies it (the all-MiniLM-L6-v2
/// tokenizer.json run by Hugging Face `tokenizers`): prompt -> [CLS] word pieces [SEP], at most
/// `maxTokens` ids. Mirror of the Kotlin core's WordPiece.kt (same steps, same tables).
///
/// Text is handled as Unicode scalar values throughout, never as `Character`s or `String`
/// comparisons: Swift's `String ==` and `Dictionary<String, _>` use canonical equivalence
/// (a decomposed Hangul syllable would equal the precomposed vocabulary line), while the
/// vocabulary lookup of the spec is exact. Hence the `[UInt32]` keys.
///
/// The character classes are the tables of TOKENIZER.md appendix A, not the platform's Unicode
/// data; only NFD and per-scalar lower-casing come from Foundation / the standard library
/// (TOKENIZER.md section 7).
public struct WordPiece: Sendable {
    public static let defaultMaxTokens = 32
    public static let maxInputCharsPerWord = 100
    public static let specialTokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    static let continuation: [UInt32] = [0x23, 0x23]          // "##"

    public let maxTokens: Int
    public let clsId: Int
    public let sepId: Int
    public let padId: Int
    let unkId: Int
    private let vocab: [[UInt32]: Int]
    private let literals: [([UInt32], Int)]

    /// `tokens`: (token, id) pairs, e.g. the lines of vocab.txt with their 0-based line numbers.
    public init(tokens: [(String, Int)], maxTokens: Int = WordPiece.defaultMaxTokens) throws {
        guard maxTokens >= 2 else { throw LRFError.invalid("maxTokens must be >= 2 ([CLS] and [SEP]), got \(maxTokens)") }
        var vocab = [[UInt32]: Int](minimumCapacity: tokens.count)
        for (token, id) in tokens {
            let key = WordPiece.scalars(token)
            guard vocab.updateValue(id, forKey: key) == nil else {
                throw LRFError.invalid("vocab.txt: token \(token) (id \(id)) repeats an earlier line")
            }
        }
        func special(_ token: String) throws -> Int {
            guard let id = vocab[WordPiece.scalars(token)] else { throw LRFError.invalid("vocab.txt: no \(token) line") }
            return id
        }
        self.vocab = vocab
        self.maxTokens = maxTokens
        self.unkId = try special("[UNK]")
        self.clsId = try special("[CLS]")
        self.sepId = try special("[SEP]")
        self.padId = try special("[PAD]")
        self.literals = try WordPiece.specialTokens.map { (WordPiece.scalars($0), try special($0)) }
    }

    /// Reads vocab.txt: UTF-8, one token per line (LF), id = 0-based line number.
    public static func fromVocab(data: Data, maxTokens: Int = WordPiece.defaultMaxTokens) throws -> WordPiece {
        var lines = data.split(separator: 0x0A, omittingEmptySubsequences: false)
        if let last = lines.last, last.isEmpty { lines.removeLast() }
        var tokens: [(String, Int)] = []
        tokens.reserveCapacity(lines.count)
        for (id, line) in lines.enumerated() {
            guard !line.isEmpty, !line.contains(0x0D), let token = String(bytes: line, encoding: .utf8) else {
                throw LRFError.invalid("vocab.txt: line \(id + 1) is empty, has a CR or is not UTF-8")
            }
            tokens.append((token, id))
        }
        return try WordPiece(tokens: tokens, maxTokens: maxTokens)
    }

    public static func fromVocab(url: URL, maxTokens: Int = WordPiece.defaultMaxTokens) throws -> WordPiece {
        try fromVocab(data: try Data(contentsOf: url), maxTokens: maxTokens)
    }

    /// The ids of `prompt`: [CLS], the first maxTokens - 2 word pieces, [SEP]. Any string works.
    public func encode(_ prompt: String) -> [Int] {
        let text = WordPiece.scalars(prompt)
        var pieces: [Int] = []
        var start = 0
        var i = 0
        while i < text.count {                       // section 2: special-token literals first
            if text[i] == 0x5B, let hit = literals.first(where: { WordPiece.matches(text, $0.0, at: i) }) {
                encodeText(Array(text[start..<i]), into: &pieces)
                pieces.append(hit.1)
                i += hit.0.count
                start = i
            } else {
                i += 1
            }
        }
        encodeText(Array(text[start...]), into: &pieces)
        let keep = min(pieces.count, maxTokens - 2)  // section 6: truncation
        return [clsId] + pieces[0..<keep] + [sepId]
    }

    /// ids padded with [PAD] to `length`, and the attention mask (1 = token, 0 = padding).
    public func padded(_ ids: [Int], length: Int) throws -> (ids: [Int], mask: [Int]) {
        guard length >= ids.count else { throw LRFError.invalid("length \(length) is shorter than the \(ids.count) ids") }
        let pad = length - ids.count
        return (ids + Array(repeating: padId, count: pad), Array(repeating: 1, count: ids.count) + Array(repeating: 0, count: pad))
    }

    private func encodeText(_ text: [UInt32], into out: inout [Int]) {
        if text.isEmpty { return }
        for word in WordPiece.preTokenize(WordPiece.normalize(text)) { wordPiece(word, into: &out) }
    }

    /// Section 5: greedy longest-match-first over scalars, "##" on non-initial pieces.
    private func wordPiece(_ word: [UInt32], into out: inout [Int]) {
        if word.count > WordPiece.maxInputCharsPerWord { out.append(unkId); return }
        var found: [Int] = []
        var start = 0
        while start < word.count {
            var end = word.count
            var id: Int?
            while start < end {
                let key = start > 0 ? WordPiece.continuation + word[start..<end] : Array(word[start..<end])
                if let hit = vocab[key] { id = hit; break }
                end -= 1
            }
            guard let matched = id else { out.append(unkId); return }   // the whole word is [UNK]
            found.append(matched)
            start = end
        }
        out.append(contentsOf: found)
    }

    static func scalars(_ s: String) -> [UInt32] { s.unicodeScalars.map { $0.value } }

    static func matches(_ text: [UInt32], _ literal: [UInt32], at i: Int) -> Bool {
        i + literal.count <= text.count && Array(text[i..<(i + literal.count)]) == literal
    }

    /// Section 3: clean text, pad CJK, NFD, drop nonspacing marks, lower-case each scalar.
    static func normalize(_ text: [UInt32]) -> [UInt32] {
        var cleaned = String.UnicodeScalarView()
        let space: Unicode.Scalar = " "
        for cp in text {
            if REMOVED.contains(cp) { continue }
            if WHITESPACE.contains(cp) { cleaned.append(space); continue }
            guard let scalar = Unicode.Scalar(cp) else { continue }
            if CJK.contains(cp) {
                cleaned.append(space)
                cleaned.append(scalar)
                cleaned.append(space)
            } else {
                cleaned.append(scalar)
            }
        }
        let nfd = String(cleaned).decomposedStringWithCanonicalMapping
        var out: [UInt32] = []
        out.reserveCapacity(text.count + 8)
        for scalar in nfd.unicodeScalars where !NONSPACING_MARK.contains(scalar.value) {
            // the full context-free mapping (U+0130 -> i U+0307), never String.lowercased()
            for lower in scalar.properties.lowercaseMapping.unicodeScalars { out.append(lower.value) }
        }
        return out
    }

    /// Section 4: split at whitespace (dropped) and around each punctuation scalar.
    static func preTokenize(_ text: [UInt32]) -> [[UInt32]] {
        var words: [[UInt32]] = []
        var current: [UInt32] = []
        for cp in text {
            if WHITESPACE.contains(cp) {
                if !current.isEmpty { words.append(current); current = [] }
            } else if isPunctuation(cp) {
                if !current.isEmpty { words.append(current); current = [] }
                words.append([cp])
            } else {
                current.append(cp)
            }
        }
        if !current.isEmpty { words.append(current) }
        return words
    }

    static func isPunctuation(_ cp: UInt32) -> Bool {
        (33...47).contains(cp) || (58...64).contains(cp) || (91...96).contains(cp) || (123...126).contains(cp)
            || PUNCTUATION.contains(cp)
    }

    // TOKENIZER.md appendix A, copied verbatim: inclusive hex ranges.
    static let REMOVED = CodePointSet([
        "0000-0008 000B-000C 000E-001F 007F-009F 00AD 0600-0605 061C 06DD",
        "070F 180E 200B-200F 202A-202E 2060-2064 2066-206F E000-F8FF FEFF",
        "FFF9-FFFB FFFD 110BD 1BCA0-1BCA3 1D173-1D17A E0001 E0020-E007F F0000-FFFFD",
        "100000-10FFFD"
    ])
    static let WHITESPACE = CodePointSet([
        "0009-000A 000D 0020 00A0 1680 2000-200A 2028-2029 202F",
        "205F 3000"
    ])
    static let CJK = CodePointSet([
        "3400-4DBF 4E00-9FFF F900-FAFF 20000-2A6DF 2A700-2B81F 2B920-2CEAF 2F800-2FA1F"
    ])
    static let NONSPACING_MARK = CodePointSet([
        "0300-033F 0342 0345-036F 0483-0487 0591-05BD 05BF 05C1-05C2 05C4-05C5",
        "05C7 0610-061A 064B-065F 0670 06D6-06DC 06DF-06E4 06E7-06E8 06EA-06ED",
        "0711 0730-074A 07A6-07B0 07EB-07F3 0816-0819 081B-0823 0825-0827 0829-082D",
        "0859-085B 08E3-0902 093A 093C 0941-0948 094D 0951-0957 0962-0963",
        "0981 09BC 09C1-09C4 09CD 09E2-09E3 0A01-0A02 0A3C 0A41-0A42",
        "0A47-0A48 0A4B-0A4D 0A51 0A70-0A71 0A75 0A81-0A82 0ABC 0AC1-0AC5",
        "0AC7-0AC8 0ACD 0AE2-0AE3 0B01 0B3C 0B3F 0B41-0B44 0B4D",
        "0B56 0B62-0B63 0B82 0BC0 0BCD 0C00 0C3E-0C40 0C46-0C47",
        "0C4A-0C4D 0C55-0C56 0C62-0C63 0C81 0CBC 0CBF 0CC6 0CCC-0CCD",
        "0CE2-0CE3 0D01 0D41-0D44 0D4D 0D62-0D63 0DCA 0DD2-0DD4 0DD6",
        "0E31 0E34-0E3A 0E47-0E4E 0EB1 0EB4-0EB9 0EBB-0EBC 0EC8-0ECD 0F18-0F19",
        "0F35 0F37 0F39 0F71-0F72 0F74 0F77 0F79-0F7E 0F80",
        "0F82-0F84 0F86-0F87 0F8D-0F92 0F94-0F97 0F99-0F9C 0F9E-0FA1 0FA3-0FA6 0FA8-0FAB",
        "0FAD-0FB8 0FBA-0FBC 0FC6 102D-1030 1032-1037 1039-103A 103D-103E 1058-1059",
        "105E-1060 1071-1074 1082 1085-1086 108D 109D 135D-135F 1712-1714",
        "1732-1734 1752-1753 1772-1773 17B4-17B5 17B7-17BD 17C6 17C9-17D3 17DD",
        "180B-180D 18A9 1920-1922 1927-1928 1932 1939-193B 1A17-1A18 1A1B",
        "1A56 1A58-1A5E 1A60 1A62 1A65-1A6C 1A73-1A7C 1A7F 1AB0-1ABD",
        "1B00-1B03 1B34 1B36-1B3A 1B3C 1B42 1B6B-1B73 1B80-1B81 1BA2-1BA5",
        "1BA8-1BA9 1BAB-1BAD 1BE6 1BE8-1BE9 1BED 1BEF-1BF1 1C2C-1C33 1C36-1C37",
        "1CD0-1CD2 1CD4-1CE0 1CE2-1CE8 1CED 1CF4 1CF8-1CF9 1DC0-1DF5 1DFC-1DFF",
        "20D0-20DC 20E1 20E5-20F0 2CEF-2CF1 2D7F 2DE0-2DFF 302A-302D 3099-309A",
        "A66F A674-A67D A69E-A69F A6F0-A6F1 A802 A806 A80B A825-A826",
        "A8C4 A8E0-A8F1 A926-A92D A947-A951 A980-A982 A9B3 A9B6-A9B9 A9BC",
        "A9E5 AA29-AA2E AA31-AA32 AA35-AA36 AA43 AA4C AA7C AAB0",
        "AAB2-AAB4 AAB7-AAB8 AABE-AABF AAC1 AAEC-AAED AAF6 ABE5 ABE8",
        "ABED FB1E FE00-FE0F FE20-FE2F 101FD 102E0 10376-1037A 10A01-10A03",
        "10A05-10A06 10A0C-10A0F 10A38-10A3A 10A3F 10AE5-10AE6 11001 11038-11046 1107F-11081",
        "110B3-110B6 110B9-110BA 11100-11102 11127-1112B 1112D 11130-11134 11173 11180-11181",
        "111B6-111BE 111CA-111CC 1122F-11231 11234 11236-11237 112DF 112E3-112EA 11300-11301",
        "1133C 11340 11366-1136C 11370-11374 114B3-114B8 114BA 114BF-114C0 114C2-114C3",
        "115B2-115B5 115BC-115BD 115BF-115C0 115DC-115DD 11633-1163A 1163D 1163F-11640 116AB",
        "116AD 116B0-116B5 116B7 1171D-1171F 11722-11725 11727-1172B 16AF0-16AF4 16B30-16B36",
        "16F8F-16F92 1BC9D-1BC9E 1D167-1D169 1D17B-1D182 1D185-1D18B 1D1AA-1D1AD 1D242-1D244 1DA00-1DA36",
        "1DA3B-1DA6C 1DA75 1DA84 1DA9B-1DA9F 1DAA1-1DAAF 1E8D0-1E8D6 E0100-E01EF"
    ])
    static let PUNCTUATION = CodePointSet([
        "0021-002F 003A-0040 005B-0060 007B-007E 00A1 00A7 00AB 00B6-00B7",
        "00BB 00BF 037E 0387 055A-055F 0589-058A 05BE 05C0",
        "05C3 05C6 05F3-05F4 0609-060A 060C-060D 061B 061E-061F 066A-066D",
        "06D4 0700-070D 07F7-07F9 0830-083E 085E 0964-0965 0970 0AF0",
        "0DF4 0E4F 0E5A-0E5B 0F04-0F12 0F14 0F3A-0F3D 0F85 0FD0-0FD4",
        "0FD9-0FDA 104A-104F 10FB 1360-1368 1400 166D-166E 169B-169C 16EB-16ED",
        "1735-1736 17D4-17D6 17D8-17DA 1800-180A 1944-1945 1A1E-1A1F 1AA0-1AA6 1AA8-1AAD",
        "1B5A-1B60 1BFC-1BFF 1C3B-1C3F 1C7E-1C7F 1CC0-1CC7 1CD3 2010-2027 2030-2043",
        "2045-2051 2053-205E 207D-207E 208D-208E 2308-230B 2329-232A 2768-2775 27C5-27C6",
        "27E6-27EF 2983-2998 29D8-29DB 29FC-29FD 2CF9-2CFC 2CFE-2CFF 2D70 2E00-2E2E",
        "2E30-2E42 3001-3003 3008-3011 3014-301F 3030 303D 30A0 30FB",
        "A4FE-A4FF A60D-A60F A673 A67E A6F2-A6F7 A874-A877 A8CE-A8CF A8F8-A8FA",
        "A8FC A92E-A92F A95F A9C1-A9CD A9DE-A9DF AA5C-AA5F AADE-AADF AAF0-AAF1",
        "ABEB FD3E-FD3F FE10-FE19 FE30-FE52 FE54-FE61 FE63 FE68 FE6A-FE6B",
        "FF01-FF03 FF05-FF0A FF0C-FF0F FF1A-FF1B FF1F-FF20 FF3B-FF3D FF3F FF5B",
        "FF5D FF5F-FF65 10100-10102 1039F 103D0 1056F 10857 1091F",
        "1093F 10A50-10A58 10A7F 10AF0-10AF6 10B39-10B3F 10B99-10B9C 11047-1104D 110BB-110BC",
        "110BE-110C1 11140-11143 11174-11175 111C5-111C9 111CD 111DB 111DD-111DF 11238-1123D",
        "112A9 114C6 115C1-115D7 11641-11643 1173C-1173E 12470-12474 16A6E-16A6F 16AF5",
        "16B37-16B3B 16B44 1BC9F 1DA87-1DA8B"
    ])
}

/// A sorted list of inclusive code point ranges, written "0300-036F 0483 ..." (hex).
public struct CodePointSet: Sendable {
    private let lo: [UInt32]
    private let hi: [UInt32]

    init(_ lines: [String]) {
        var lo: [UInt32] = []
        var hi: [UInt32] = []
        for part in lines.joined(separator: " ").split(separator: " ") {
            let bounds = part.split(separator: "-")
            guard let a = UInt32(bounds[0], radix: 16), let b = UInt32(bounds[bounds.count - 1], radix: 16),
                  a <= b, lo.isEmpty || a > hi[hi.count - 1] else {
                preconditionFailure("CodePointSet: bad or unsorted range \(part)")
            }
            lo.append(a)
            hi.append(b)
        }
        self.lo = lo
        self.hi = hi
    }

    public func contains(_ cp: UInt32) -> Bool {
        var a = 0
        var b = lo.count - 1
        while a <= b {
            let m = (a + b) / 2
            if cp < lo[m] { b = m - 1 } else if cp > hi[m] { a = m + 1 } else { return true }
        }
        return false
    }
}
