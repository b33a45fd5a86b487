import Foundation
import XCTest
@testable import LRFKit

/// Mirror of WordPieceTest.kt: the committed golden ids (Resources/tokenizer_golden.json, a copy
/// of tests/fixtures/tokenizer_golden.json made by Python `tokenizers`) with the vocab subset the
/// file carries, plus the rules of runtime/TOKENIZER.md that the golden cases do not spell out.
final class WordPieceTests: XCTestCase {
    private func golden() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: try Fixtures.data("tokenizer_golden.json")) as! [String: Any]
    }

    /// The vocab subset as exact (token, id) pairs: read through NSDictionary so that no two
    /// canonically equivalent keys are merged by Swift's String hashing.
    private func tokenizer(_ doc: [String: Any]) throws -> WordPiece {
        let vocab = doc["vocab"] as! NSDictionary
        var pairs: [(String, Int)] = []
        for (key, value) in vocab { pairs.append((key as! String, (value as! NSNumber).intValue)) }
        return try WordPiece(tokens: pairs, maxTokens: (doc["max_tokens"] as! NSNumber).intValue)
    }

    private func show(_ s: String) -> String {
        s.unicodeScalars.map { (0x20...0x7E).contains($0.value) ? String($0) : String(format: "\\u{%X}", $0.value) }.joined()
    }

    func testGoldenIdsAgree() throws {
        let doc = try golden()
        let tok = try tokenizer(doc)
        let cases = doc["cases"] as! [[String: Any]]
        XCTAssertGreaterThanOrEqual(cases.count, 60)
        var bad = 0
        for c in cases {
            let prompt = c["prompt"] as! String
            let expected = (c["ids"] as! [NSNumber]).map { $0.intValue }
            let got = tok.encode(prompt)
            if got != expected {
                bad += 1
                XCTFail("\"\(show(prompt))\": expected \(expected), got \(got)")
            }
        }
        XCTAssertEqual(bad, 0, "\(bad) of \(cases.count) golden prompts differ from Python tokenizers")
    }

    func testSpecialLiteralsPaddingAndTruncation() throws {
        let tok = try tokenizer(try golden())
        XCTAssertEqual(tok.encode(""), [tok.clsId, tok.sepId])
        XCTAssertEqual(tok.encode("[PAD]"), [tok.clsId, 0, tok.sepId])           // id 0, mask 1
        let padded = try tok.padded(tok.encode("[PAD]"), length: 5)
        XCTAssertEqual(padded.ids, [tok.clsId, 0, tok.sepId, 0, 0])
        XCTAssertEqual(padded.mask, [1, 1, 1, 0, 0])
        let long = tok.encode(String(repeating: "cat ", count: 1000))
        XCTAssertEqual(long.count, WordPiece.defaultMaxTokens)
        XCTAssertEqual(long.last, tok.sepId)
    }

    func testHostilePromptsNeverTrap() throws {
        let tok = try tokenizer(try golden())
        let hostile = ["\u{0}", "a\u{0}b", "\u{10FFFF}", String(repeating: "x", count: 1_000_000),
                       String(repeating: "\u{301}", count: 10_000), String(repeating: "[", count: 1000),
                       String(repeating: "[MASK", count: 100), "\u{202E}\u{0}\u{85}", "\r\n"]
        for p in hostile {
            XCTAssertTrue((2...WordPiece.defaultMaxTokens).contains(tok.encode(p).count))
        }
        XCTAssertEqual(tok.encode("\u{0}\u{200B}\u{FEFF}"), [tok.clsId, tok.sepId])
    }

    func testTablesAreTheSpecsNotThePlatforms() {
        XCTAssertFalse(WordPiece.REMOVED.contains(0x08E2))          // Cf since Unicode 9: kept
        XCTAssertTrue(WordPiece.REMOVED.contains(0x180E))           // Cf in Unicode 8: removed
        XCTAssertFalse(WordPiece.isPunctuation(0x2E52))             // Po since Unicode 13: a letter here
        XCTAssertTrue(WordPiece.isPunctuation(0x24) && WordPiece.isPunctuation(0x7E))   // '$' and '~'
        XCTAssertFalse(WordPiece.WHITESPACE.contains(0x1C))
        XCTAssertTrue(WordPiece.WHITESPACE.contains(0xA0))
        XCTAssertTrue(WordPiece.CJK.contains(0x2B920))
        XCTAssertFalse(WordPiece.CJK.contains(0x2B820))
        XCTAssertEqual(WordPiece.normalize(WordPiece.scalars("\u{130}")), WordPiece.scalars("i"))
        XCTAssertEqual(WordPiece.normalize(WordPiece.scalars("\u{3A3}\u{391}\u{3A3}")),
                       WordPiece.scalars("\u{3C3}\u{3B1}\u{3C3}"))  // no final-sigma rule
        // a decomposed Hangul syllable must not match a precomposed vocabulary line
        let tok = try! WordPiece(tokens: [("[PAD]", 0), ("[UNK]", 1), ("[CLS]", 2), ("[SEP]", 3), ("[MASK]", 4), ("\u{D55C}", 5)])
        XCTAssertEqual(tok.encode("\u{D55C}"), [2, 1, 3])            // NFD splits it into jamo: [UNK]
    }
}
