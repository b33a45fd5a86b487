package com.lrfmobile.core

/**
 * BERT WordPiece uncased, exactly as runtime/TOKENIZER.md specifies it (the all-MiniLM-L6-v2
 * tokenizer.json run by Hugging Face `tokenizers`): prompt -> [CLS] word pieces [SEP], at most
 * [maxTokens] ids. Any String is accepted (NUL, control characters, lone surrogates, any length);
 * the result is never empty.
 *
 * The character classes are the tables of TOKENIZER.md appendix A, not the platform's Unicode
 * data: `tokenizers` classifies with Unicode 8.0-era tables, and a device's Java/ICU tables are
 * newer (or older). Only NFD (java.text.Normalizer) and lower-casing come from the platform
 * (TOKENIZER.md section 7 says why that is exact for this vocabulary).
 */
class WordPiece(private val vocab: Map<String, Int>, val maxTokens: Int = MAX_TOKENS) {
    private val unkId = special("[UNK]")
    val clsId = special("[CLS]")
    val sepId = special("[SEP]")
    val padId = special("[PAD]")
    /** The special-token literals matched in the raw prompt (section 2), with their ids. */
    private val literals: List<Pair<String, Int>> = SPECIAL_TOKENS.map { it to special(it) }

    init {
        require(maxTokens >= 2) { "maxTokens must be >= 2 ([CLS] and [SEP]), got $maxTokens" }
    }

    private fun special(token: String): Int =
        vocab[token] ?: throw IllegalArgumentException("vocab.txt: no $token line")

    /** The ids of [prompt]: [CLS], the first maxTokens - 2 word pieces, [SEP]. */
    fun encode(prompt: String): IntArray {
        val pieces = ArrayList<Int>()
        var start = 0
        var i = 0
        while (i < prompt.length) {                  // section 2: special-token literals first
            val hit = if (prompt[i] == '[') literals.firstOrNull { prompt.startsWith(it.first, i) } else null
            if (hit == null) { i++; continue }
            encodeText(prompt.substring(start, i), pieces)
            pieces.add(hit.second)
            i += hit.first.length
            start = i
        }
        encodeText(prompt.substring(start), pieces)
        val keep = minOf(pieces.size, maxTokens - 2)   // section 6: truncation
        val ids = IntArray(keep + 2)
        ids[0] = clsId
        for (k in 0 until keep) ids[k + 1] = pieces[k]
        ids[keep + 1] = sepId
        return ids
    }

    /** ids padded with [PAD] to [length] and their attention mask (1 = token, 0 = padding). */
    fun padded(ids: IntArray, length: Int): Pair<IntArray, IntArray> {
        require(length >= ids.size) { "length $length is shorter than the ${ids.size} ids" }
        val out = IntArray(length) { if (it < ids.size) ids[it] else padId }
        return out to IntArray(length) { if (it < ids.size) 1 else 0 }
    }

    private fun encodeText(text: String, out: MutableList<Int>) {
        if (text.isEmpty()) return
        for (word in preTokenize(normalize(text))) wordPiece(word, out)
    }

    /** Section 5: greedy longest-match-first over code points, "##" on non-initial pieces. */
    private fun wordPiece(word: IntArray, out: MutableList<Int>) {
        if (word.size > MAX_INPUT_CHARS_PER_WORD) { out.add(unkId); return }
        val found = ArrayList<Int>()
        var start = 0
        while (start < word.size) {
            var end = word.size
            var id: Int? = null
            while (start < end) {
                val piece = String(word, start, end - start)
                id = vocab[if (start > 0) "##$piece" else piece]
                if (id != null) break
                end--
            }
            if (id == null) { out.add(unkId); return }   // one unmatched position: the word is [UNK]
            found.add(id)
            start = end
        }
        out.addAll(found)
    }

    companion object {
        const val MAX_TOKENS = 32
        const val MAX_INPUT_CHARS_PER_WORD = 100
        val SPECIAL_TOKENS = listOf("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

        /** Reads vocab.txt: UTF-8, one token per line, id = 0-based line number. */
        fun fromVocabText(text: String, maxTokens: Int = MAX_TOKENS): WordPiece {
            val lines = text.split("\n")
            val tokens = if (lines.isNotEmpty() && lines.last().isEmpty()) lines.dropLast(1) else lines
            val vocab = HashMap<String, Int>(tokens.size * 2)
            tokens.forEachIndexed { id, token ->
                require(token.isNotEmpty() && token.indexOf('\r') < 0) { "vocab.txt: line ${id + 1} is empty or has a CR" }
                require(vocab.put(token, id) == null) { "vocab.txt: token on line ${id + 1} repeats an earlier line" }
            }
            return WordPiece(vocab, maxTokens)
        }

        fun fromVocabFile(file: java.io.File, maxTokens: Int = MAX_TOKENS): WordPiece =
            fromVocabText(String(file.readBytes(), Charsets.UTF_8), maxTokens)

        /** Section 3: clean text, pad CJK, NFD, drop nonspacing marks, lower-case. */
        fun normalize(text: String): String {
            val sb = StringBuilder(text.length + 8)
            forEachCodePoint(text) { cp ->
                when {
                    cp in 0xD800..0xDFFF -> Unit                      // lone surrogate: not text
                    REMOVED.contains(cp) -> Unit
                    WHITESPACE.contains(cp) -> sb.append(' ')
                    CJK.contains(cp) -> sb.append(' ').appendCodePoint(cp).append(' ')
                    else -> sb.appendCodePoint(cp)
                }
            }
            val nfd = java.text.Normalizer.normalize(sb, java.text.Normalizer.Form.NFD)
            val out = StringBuilder(nfd.length)
            forEachCodePoint(nfd) { cp ->
                if (!NONSPACING_MARK.contains(cp)) {
                    if (cp == 0x130) out.append("i\u0307") else out.appendCodePoint(Character.toLowerCase(cp))
                }
            }
            return out.toString()
        }

        /** Section 4: split at whitespace (dropped) and around each punctuation code point. */
        fun preTokenize(text: String): List<IntArray> {
            val words = ArrayList<IntArray>()
            val cur = ArrayList<Int>()
            fun flush() { if (cur.isNotEmpty()) { words.add(cur.toIntArray()); cur.clear() } }
            forEachCodePoint(text) { cp ->
                when {
                    WHITESPACE.contains(cp) -> flush()
                    isPunctuation(cp) -> { flush(); words.add(intArrayOf(cp)) }
                    else -> cur.add(cp)
                }
            }
            flush()
            return words
        }

        fun isPunctuation(cp: Int): Boolean =
            cp in 33..47 || cp in 58..64 || cp in 91..96 || cp in 123..126 || PUNCTUATION.contains(cp)

        private inline fun forEachCodePoint(s: CharSequence, f: (Int) -> Unit) {
            var i = 0
            while (i < s.length) {
                val cp = Character.codePointAt(s, i)
                f(cp)
                i += Character.charCount(cp)
            }
        }

        // TOKENIZER.md appendix A, copied verbatim: inclusive hex ranges.
        val REMOVED = CodePointSet.parse(
            "0000-0008 000B-000C 000E-001F 007F-009F 00AD 0600-0605 061C 06DD " +
            "070F 180E 200B-200F 202A-202E 2060-2064 2066-206F E000-F8FF FEFF " +
            "FFF9-FFFB FFFD 110BD 1BCA0-1BCA3 1D173-1D17A E0001 E0020-E007F F0000-FFFFD " +
            "100000-10FFFD ")
        val WHITESPACE = CodePointSet.parse(
            "0009-000A 000D 0020 00A0 1680 2000-200A 2028-2029 202F " +
            "205F 3000 ")
        val CJK = CodePointSet.parse(
            "3400-4DBF 4E00-9FFF F900-FAFF 20000-2A6DF 2A700-2B81F 2B920-2CEAF 2F800-2FA1F ")
        val NONSPACING_MARK = CodePointSet.parse(
            "0300-033F 0342 0345-036F 0483-0487 0591-05BD 05BF 05C1-05C2 05C4-05C5 " +
            "05C7 0610-061A 064B-065F 0670 06D6-06DC 06DF-06E4 06E7-06E8 06EA-06ED " +
            "0711 0730-074A 07A6-07B0 07EB-07F3 0816-0819 081B-0823 0825-0827 0829-082D " +
            "0859-085B 08E3-0902 093A 093C 0941-0948 094D 0951-0957 0962-0963 " +
            "0981 09BC 09C1-09C4 09CD 09E2-09E3 0A01-0A02 0A3C 0A41-0A42 " +
            "0A47-0A48 0A4B-0A4D 0A51 0A70-0A71 0A75 0A81-0A82 0ABC 0AC1-0AC5 " +
            "0AC7-0AC8 0ACD 0AE2-0AE3 0B01 0B3C 0B3F 0B41-0B44 0B4D " +
            "0B56 0B62-0B63 0B82 0BC0 0BCD 0C00 0C3E-0C40 0C46-0C47 " +
            "0C4A-0C4D 0C55-0C56 0C62-0C63 0C81 0CBC 0CBF 0CC6 0CCC-0CCD " +
            "0CE2-0CE3 0D01 0D41-0D44 0D4D 0D62-0D63 0DCA 0DD2-0DD4 0DD6 " +
            "0E31 0E34-0E3A 0E47-0E4E 0EB1 0EB4-0EB9 0EBB-0EBC 0EC8-0ECD 0F18-0F19 " +
            "0F35 0F37 0F39 0F71-0F72 0F74 0F77 0F79-0F7E 0F80 " +
            "0F82-0F84 0F86-0F87 0F8D-0F92 0F94-0F97 0F99-0F9C 0F9E-0FA1 0FA3-0FA6 0FA8-0FAB " +
            "0FAD-0FB8 0FBA-0FBC 0FC6 102D-1030 1032-1037 1039-103A 103D-103E 1058-1059 " +
            "105E-1060 1071-1074 1082 1085-1086 108D 109D 135D-135F 1712-1714 " +
            "1732-1734 1752-1753 1772-1773 17B4-17B5 17B7-17BD 17C6 17C9-17D3 17DD " +
            "180B-180D 18A9 1920-1922 1927-1928 1932 1939-193B 1A17-1A18 1A1B " +
            "1A56 1A58-1A5E 1A60 1A62 1A65-1A6C 1A73-1A7C 1A7F 1AB0-1ABD " +
            "1B00-1B03 1B34 1B36-1B3A 1B3C 1B42 1B6B-1B73 1B80-1B81 1BA2-1BA5 " +
            "1BA8-1BA9 1BAB-1BAD 1BE6 1BE8-1BE9 1BED 1BEF-1BF1 1C2C-1C33 1C36-1C37 " +
            "1CD0-1CD2 1CD4-1CE0 1CE2-1CE8 1CED 1CF4 1CF8-1CF9 1DC0-1DF5 1DFC-1DFF " +
            "20D0-20DC 20E1 20E5-20F0 2CEF-2CF1 2D7F 2DE0-2DFF 302A-302D 3099-309A " +
            "A66F A674-A67D A69E-A69F A6F0-A6F1 A802 A806 A80B A825-A826 " +
            "A8C4 A8E0-A8F1 A926-A92D A947-A951 A980-A982 A9B3 A9B6-A9B9 A9BC " +
            "A9E5 AA29-AA2E AA31-AA32 AA35-AA36 AA43 AA4C AA7C AAB0 " +
            "AAB2-AAB4 AAB7-AAB8 AABE-AABF AAC1 AAEC-AAED AAF6 ABE5 ABE8 " +
            "ABED FB1E FE00-FE0F FE20-FE2F 101FD 102E0 10376-1037A 10A01-10A03 " +
            "10A05-10A06 10A0C-10A0F 10A38-10A3A 10A3F 10AE5-10AE6 11001 11038-11046 1107F-11081 " +
            "110B3-110B6 110B9-110BA 11100-11102 11127-1112B 1112D 11130-11134 11173 11180-11181 " +
            "111B6-111BE 111CA-111CC 1122F-11231 11234 11236-11237 112DF 112E3-112EA 11300-11301 " +
            "1133C 11340 11366-1136C 11370-11374 114B3-114B8 114BA 114BF-114C0 114C2-114C3 " +
            "115B2-115B5 115BC-115BD 115BF-115C0 115DC-115DD 11633-1163A 1163D 1163F-11640 116AB " +
            "116AD 116B0-116B5 116B7 1171D-1171F 11722-11725 11727-1172B 16AF0-16AF4 16B30-16B36 " +
            "16F8F-16F92 1BC9D-1BC9E 1D167-1D169 1D17B-1D182 1D185-1D18B 1D1AA-1D1AD 1D242-1D244 1DA00-1DA36 " +
            "1DA3B-1DA6C 1DA75 1DA84 1DA9B-1DA9F 1DAA1-1DAAF 1E8D0-1E8D6 E0100-E01EF ")
        val PUNCTUATION = CodePointSet.parse(
            "0021-002F 003A-0040 005B-0060 007B-007E 00A1 00A7 00AB 00B6-00B7 " +
            "00BB 00BF 037E 0387 055A-055F 0589-058A 05BE 05C0 " +
            "05C3 05C6 05F3-05F4 0609-060A 060C-060D 061B 061E-061F 066A-066D " +
            "06D4 0700-070D 07F7-07F9 0830-083E 085E 0964-0965 0970 0AF0 " +
            "0DF4 0E4F 0E5A-0E5B 0F04-0F12 0F14 0F3A-0F3D 0F85 0FD0-0FD4 " +
            "0FD9-0FDA 104A-104F 10FB 1360-1368 1400 166D-166E 169B-169C 16EB-16ED " +
            "1735-1736 17D4-17D6 17D8-17DA 1800-180A 1944-1945 1A1E-1A1F 1AA0-1AA6 1AA8-1AAD " +
            "1B5A-1B60 1BFC-1BFF 1C3B-1C3F 1C7E-1C7F 1CC0-1CC7 1CD3 2010-2027 2030-2043 " +
            "2045-2051 2053-205E 207D-207E 208D-208E 2308-230B 2329-232A 2768-2775 27C5-27C6 " +
            "27E6-27EF 2983-2998 29D8-29DB 29FC-29FD 2CF9-2CFC 2CFE-2CFF 2D70 2E00-2E2E " +
            "2E30-2E42 3001-3003 3008-3011 3014-301F 3030 303D 30A0 30FB " +
            "A4FE-A4FF A60D-A60F A673 A67E A6F2-A6F7 A874-A877 A8CE-A8CF A8F8-A8FA " +
            "A8FC A92E-A92F A95F A9C1-A9CD A9DE-A9DF AA5C-AA5F AADE-AADF AAF0-AAF1 " +
            "ABEB FD3E-FD3F FE10-FE19 FE30-FE52 FE54-FE61 FE63 FE68 FE6A-FE6B " +
            "FF01-FF03 FF05-FF0A FF0C-FF0F FF1A-FF1B FF1F-FF20 FF3B-FF3D FF3F FF5B " +
            "FF5D FF5F-FF65 10100-10102 1039F 103D0 1056F 10857 1091F " +
            "1093F 10A50-10A58 10A7F 10AF0-10AF6 10B39-10B3F 10B99-10B9C 11047-1104D 110BB-110BC " +
            "110BE-110C1 11140-11143 11174-11175 111C5-111C9 111CD 111DB 111DD-111DF 11238-1123D " +
            "112A9 114C6 115C1-115D7 11641-11643 1173C-1173E 12470-12474 16A6E-16A6F 16AF5 " +
            "16B37-16B3B 16B44 1BC9F 1DA87-1DA8B ")
    }
}

/** A sorted list of inclusive code point ranges, written "0300-036F 0483 ..." (hex). */
class CodePointSet private constructor(private val lo: IntArray, private val hi: IntArray) {
    fun contains(cp: Int): Boolean {
        var a = 0
        var b = lo.size - 1
        while (a <= b) {
            val m = (a + b) ushr 1
            when {
                cp < lo[m] -> b = m - 1
                cp > hi[m] -> a = m + 1
                else -> return true
            }
        }
        return false
    }

    /** The ranges back in the text form, for the test that compares them with TOKENIZER.md. */
    fun ranges(): List<IntArray> = lo.indices.map { intArrayOf(lo[it], hi[it]) }

    companion object {
        fun parse(text: String): CodePointSet {
            val parts = text.trim().split(Regex("\\s+"))
            val lo = IntArray(parts.size)
            val hi = IntArray(parts.size)
            parts.forEachIndexed { i, p ->
                val dash = p.indexOf('-')
                lo[i] = Integer.parseInt(if (dash < 0) p else p.substring(0, dash), 16)
                hi[i] = Integer.parseInt(if (dash < 0) p else p.substring(dash + 1), 16)
                require(lo[i] <= hi[i] && (i == 0 || lo[i] > hi[i - 1])) { "unsorted range $p" }
            }
            return CodePointSet(lo, hi)
        }
    }
}
