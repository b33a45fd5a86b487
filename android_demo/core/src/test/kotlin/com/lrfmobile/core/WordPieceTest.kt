package com.lrfmobile.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Assume.assumeTrue
import org.junit.Test
import java.io.File

/**
 * WordPiece against Python `tokenizers` (runtime/TOKENIZER.md):
 *  - the committed golden edge cases (src/test/resources/tokenizer_golden.json, a copy of
 *    tests/fixtures/tokenizer_golden.json) with the vocab subset they carry;
 *  - when LRF_TOKENIZER_CORPUS names a file (tests/test_tokenizers_agree.py writes one), the
 *    10,000-prompt corpus with the real vocab.txt; its ids go to LRF_TOKENIZER_OUT if set.
 */
class WordPieceTest {
    private fun golden(): JsonObj {
        val stream = WordPieceTest::class.java.getResourceAsStream("/tokenizer_golden.json")
            ?: throw IllegalStateException("tokenizer_golden.json is not on the test classpath")
        return JsonObj.parse(stream.use { String(it.readBytes(), Charsets.UTF_8) }, "tokenizer_golden.json")
    }

    private fun goldenTokenizer(doc: JsonObj): WordPiece {
        val vocab = HashMap<String, Int>()
        for ((token, id) in doc.obj("vocab").map) vocab[token] = (id as JsonNumber).toLongExact().toInt()
        return WordPiece(vocab, doc.int("max_tokens"))
    }

    /** Escaped prompt for failure messages: control characters and non-ASCII as \u / \U. */
    private fun show(s: String): String {
        val sb = StringBuilder("\"")
        var i = 0
        while (i < s.length) {
            val cp = s.codePointAt(i)
            if (cp in 0x20..0x7E) sb.appendCodePoint(cp) else sb.append(String.format(if (cp > 0xFFFF) "\\U%08x" else "\\u%04x", cp))
            i += Character.charCount(cp)
        }
        return sb.append('"').toString().let { if (it.length > 160) it.substring(0, 160) + "..." else it }
    }

    /** Every case's ids; the failure lists the first 20 disagreements and the count. */
    private fun check(tok: WordPiece, cases: List<JsonObj>, what: String): List<IntArray> {
        val got = cases.map { tok.encode(it.string("prompt")) }
        val bad = cases.indices.filter { !got[it].contentEquals(cases[it].intList("ids").toIntArray()) }
        if (bad.isNotEmpty()) {
            fail("$what: ${bad.size} of ${cases.size} prompts differ from Python tokenizers:\n" +
                bad.take(20).joinToString("\n") {
                    "  ${show(cases[it].string("prompt"))}: expected ${cases[it].intList("ids")}, got ${got[it].toList()}"
                })
        }
        return got
    }

    @Test
    fun goldenIdsAgree() {
        val doc = golden()
        val cases = doc.objList("cases")
        assertTrue("need the ~60 golden edge cases", cases.size >= 60)
        check(goldenTokenizer(doc), cases, "tokenizer_golden.json")
    }

    @Test
    fun corpusAgrees() {
        val path = System.getenv("LRF_TOKENIZER_CORPUS")
        assumeTrue("LRF_TOKENIZER_CORPUS not set (tests/test_tokenizers_agree.py sets it)", path != null)
        val doc = JsonObj.parse(String(File(path!!).readBytes(), Charsets.UTF_8), path)
        val tok = WordPiece.fromVocabFile(File(doc.string("vocab_file")), doc.int("max_tokens"))
        val cases = doc.objList("cases")
        val got = cases.map { tok.encode(it.string("prompt")) }
        System.getenv("LRF_TOKENIZER_OUT")?.let { out ->      // for the Python side's counts
            File(out).writeText(got.joinToString(",\n", "[", "]\n") { it.joinToString(",", "[", "]") })
        }
        check(tok, cases, path)
    }

    @Test
    fun specialLiteralsPaddingAndTruncation() {
        val tok = goldenTokenizer(golden())
        val cls = tok.clsId
        val sep = tok.sepId
        assertArrayEquals(intArrayOf(cls, sep), tok.encode(""))
        assertArrayEquals(intArrayOf(cls, 0, sep), tok.encode("[PAD]"))          // id 0, mask 1
        val (ids, mask) = tok.padded(tok.encode("[PAD]"), 5)
        assertArrayEquals(intArrayOf(cls, 0, sep, 0, 0), ids)
        assertArrayEquals(intArrayOf(1, 1, 1, 0, 0), mask)
        val long = tok.encode("cat ".repeat(1000))
        assertEquals(WordPiece.MAX_TOKENS, long.size)
        assertEquals(sep, long.last())
    }

    @Test
    fun hostilePromptsNeverThrow() {
        val tok = goldenTokenizer(golden())
        val hostile = listOf("\u0000", "\uD800", "a\uDC00b", "\uDBFF\uDFFF", "x".repeat(1_000_000),
            "\u0301".repeat(10_000), "[".repeat(1000), "[MASK".repeat(100), "\u202E\u0000\u0085")
        for (p in hostile) {
            val ids = tok.encode(p)
            assertTrue(ids.size in 2..WordPiece.MAX_TOKENS)
        }
        assertArrayEquals(intArrayOf(tok.clsId, tok.sepId), tok.encode("\uD800\u0000\u200B"))
    }

    @Test
    fun tablesAreTheSpecsNotThePlatforms() {
        // Spot checks where Java's Unicode data disagrees with the tokenizers tables.
        assertTrue(!WordPiece.REMOVED.contains(0x08E2))           // Cf since Unicode 9: kept
        assertTrue(WordPiece.REMOVED.contains(0x180E))            // Cf in Unicode 8: removed
        assertTrue(!WordPiece.isPunctuation(0x2E52))              // Po since Unicode 13: a letter here
        assertTrue(WordPiece.isPunctuation(36) && WordPiece.isPunctuation(126))   // '$' and '~'
        assertTrue(!WordPiece.WHITESPACE.contains(0x1C) && WordPiece.WHITESPACE.contains(0x00A0))
        assertTrue(WordPiece.CJK.contains(0x2B920) && !WordPiece.CJK.contains(0x2B820))
        assertEquals("i", WordPiece.normalize("\u0130"))
        assertEquals("\u03c3\u03b1\u03c3", WordPiece.normalize("\u03a3\u0391\u03a3"))   // no final-sigma rule
    }
}
