"""A deterministic, adversarial prompt corpus for the tokenizer agreement tests (issue 27).

``corpus(seed, n)`` returns ``n`` prompts (default 10,000) built from a seeded ``random.Random``
only: the same seed gives the same list on every machine and Python version (no hash ordering,
no files read). Prompts are surrogate-free ``str``: every one encodes to UTF-8 and survives a
JSON round trip, so Kotlin, Swift and JavaScript read exactly the same code points.

What it mixes (see ``KINDS``): emoji-name phrases, random words, mixed case, accents and
combining marks, CJK (BMP and astral), emoji and ZWJ sequences, punctuation runs, digits, words
longer than 100 characters, prompts far past 32 tokens, empty and whitespace-only prompts,
control characters (NUL, tab, newline, CR, DEL, C1), bidi and zero-width marks, Thai, Arabic,
Devanagari, Cyrillic, Greek (final capital sigma), fullwidth forms, the special-token literals
("[MASK]" and friends), and random code points from anywhere in Unicode, assigned or not.

Also the writer of the committed golden file::

    python tests/tokenizer_corpus.py --write-golden     # tests/fixtures/tokenizer_golden.json
"""

from __future__ import annotations

import json
import os
import random
import sys

SEED = 27
SIZE = 10_000

WORDS = """cat dog face smiling grinning heart red blue green yellow purple orange black white
happy sad angry crying laughing tears joy sun moon star cloud rain snow fire water tree flower
rose tulip leaf apple banana cherry grape lemon pizza burger cake cookie coffee tea beer wine
car bus train plane rocket ship bike house castle mountain beach ocean wave island robot alien
ghost skull clown monster unicorn dragon panda tiger lion monkey bird eagle owl penguin fish
whale dolphin octopus snake turtle frog bee butterfly hand thumbs up down wave clap pray eyes
mouth tongue nose ear baby boy girl man woman person king queen prince princess wizard fairy
vampire zombie ninja pirate astronaut doctor teacher chef farmer artist sparkles fireworks
balloon gift trophy medal soccer basketball guitar piano drum microphone camera phone computer
key lock bell book pencil scissors hammer sword shield bomb money gem crown glasses umbrella
""".split()

EMOJI_NAMES = """grinning face|face with tears of joy|smiling face with heart-eyes|thinking face
|red heart|thumbs up|party popper|fire|sparkles|cat face|dog face|pile of poo|ghost|alien monster
|robot|skull and crossbones|rolling on the floor laughing|face with rolling eyes|loudly crying face
|smiling face with sunglasses|upside-down face|zany face|exploding head|partying face
|woozy face|pleading face|hot face|cold face|face with monocle|nerd face|clown face
|see-no-evil monkey|hear-no-evil monkey|speak-no-evil monkey|rainbow flag|pirate flag
|woman technologist: medium skin tone|man shrugging|family: man, woman, girl, boy|t-rex
|jack-o-lantern|christmas tree|snowman without snow|high voltage|four leaf clover|cherry blossom
|globe showing europe-africa|new moon face|sun with face|water wave|crystal ball|magic wand
|1st place medal|keycap: 10|flag: united states|o button (blood type)|a button (blood type)
""".replace("\n", "").split("|")

EMOJI = ["\U0001F600", "\U0001F602", "\U0001F60D", "\U0001F914", "\u2764\ufe0f", "\U0001F44D",
         "\U0001F389", "\U0001F525", "\u2728", "\U0001F431", "\U0001F436", "\U0001F4A9",
         "\U0001F47B", "\U0001F916", "\u2620\ufe0f", "\U0001F923", "\U0001F644", "\U0001F62D",
         "\U0001F92F", "\U0001F973", "\U0001F974", "\U0001F97A", "\U0001F975", "\U0001F976",
         "\U0001F9D0", "\U0001F913", "\U0001F921", "\U0001F648", "\U0001FAE0", "\U0001FAE8",
         "\U0001F1FA\U0001F1F8", "\U0001F1EF\U0001F1F5", "#\ufe0f\u20e3", "1\ufe0f\u20e3",
         "\U0001F44B\U0001F3FD", "\U0001F44D\U0001F3FF", "\u263A", "\u2603", "\u00A9", "\u00AE"]
ZWJ = ["\U0001F469\u200D\U0001F4BB", "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466",
       "\U0001F3F3\ufe0f\u200D\U0001F308", "\U0001F3F4\u200D\u2620\ufe0f",
       "\U0001F469\U0001F3FD\u200D\U0001F52C", "\U0001F9D1\u200D\U0001F91D\u200D\U0001F9D1",
       "\u2764\ufe0f\u200D\U0001F525", "\U0001F415\u200D\U0001F9BA", "\U0001F43B\u200D\u2744\ufe0f",
       "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"]   # tag sequence

ACCENTED = ["café", "naïve", "résumé", "Ångström", "Ærøskøbing", "Straße", "façade", "piñata",
            "jalapeño", "crème brûlée", "Zürich", "São Paulo", "Kraków", "Dvořák", "İstanbul",
            "ŁÓDŹ", "Ŋ", "ǅ", "ﬁ", "ß", "ẞ", "Ǆ", "ǈ", "ǋ", "Ⅻ", "ⓐ", "Ⓐ"]
COMBINING = ["\u0301", "\u0300", "\u0308", "\u0327", "\u0303", "\u030A", "\u0323", "\u0336",
             "\u20DD", "\u0488", "\u093C", "\u0E31", "\u0E48", "\u064B", "\u0651", "\u05B4",
             "\u1AB0", "\u1DC0", "\uFE20", "\u0345", "\u0F71", "\U0001D167"]
SCRIPTS = {
    "cjk": "猫狗笑脸心火星月太阳花树山水雨雪龍鳳愛夢中文字漢語日本語こんにちはカタカナ한국어안녕하세요",
    "cjk_astral": "\U00020000\U00020001\U0002A6D6\U0002A700\U0002B740\U0002B820\U0002CEA1"
                  "\U0002F800\U0002FA1D\U00030000\U00031350\U0002EBE0",
    "cjk_compat": "\uF900\uF901\uFA0E\uFAD9\u3400\u4DB5\u4DBF\u9FA5\u9FCC\u9FD5\u9FEA\u9FFF",
    "thai": "แมวหน้ายิ้มหัวใจสีแดงดาวไฟ",
    "arabic": "قطة وجه مبتسم قلب أحمر نجمة نار بِسْمِ",
    "devanagari": "बिल्ली मुस्कुराता चेहरा लाल दिल तारा आग क्षत्रिय",
    "cyrillic": "кошка Улыбающееся лицо КРАСНОЕ сердце ёЁ Ђђ Її",
    "greek": "ΓΆΤΑ χαμογελαστό ΠΡΟΣΩΠΟ ΟΔΟΣ Σ ΣΣ ςσ ΐΰ",
    "hebrew": "חתול פנים מחייכות לב אדום",
    "fullwidth": "ＡＢＣａｂｃ０１２！？（）［］＠＃＄％＆＊＋，－．／：；＜＝＞～｀",
    "misc": "ⅷ℃№™Ω℮ℵ∑∞≠≤≥√∫÷×±¼½¾¹²³°µ¶§†‡•…‰′″‹›«»€£¥₹₽¢ꝏꞫꟶ",
    "newer": "\u08E2\u0890\u0891\U000110CD\U00013430\u061D\u09FD\u0C77\u2E43\u2E52\U0001F970"
             "\U0001FAE0\u2C2F\uA7C0\uA7D0\U00010570\u1C90\u1CBD\U0001E900\uA7CB\U00010D50\u0897",
}
PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿‐‑‒–—―‖‗‘’‚‛“”„‟•‣․‥…‧‰‱′″‴‵‶‷‸‹›※‼‽‾‿⁀⁁⁂⁃⁅⁆⁇⁈⁉、。〃〈〉《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〽゠・﹏﹐﹑﹒"
CONTROL = ["\x00", "\t", "\n", "\r", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x80", "\x85",
           "\x9f", "\u00ad", "\ufffd", "\ufeff", "\u200b", "\u200c", "\u200d", "\u2060",
           "\U000E0001", "\uE000", "\U000F0000", "\uFFF9", "\u180E", "\U0001D173"]
BIDI = ["\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067",
        "\u2068", "\u2069", "\u061c"]
SPACES = [" ", "  ", "\u00a0", "\u1680", "\u2000", "\u2003", "\u2007", "\u200a", "\u2028",
          "\u2029", "\u202f", "\u205f", "\u3000", "\t", "\n", "\r\n"]
SPECIAL = ["[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[mask]", "[Cls]", "[ MASK ]", "[MASK",
           "MASK]", "[[SEP]]", "[MA\u0000SK]", "##ing", "##", "[unused1]"]


def _any_code_point(rng: random.Random) -> str:
    """A code point from anywhere (assigned or not), never a surrogate."""
    while True:
        cp = rng.choice((rng.randrange(0x80, 0x3000), rng.randrange(0x3000, 0x10000),
                         rng.randrange(0x10000, 0x30000), rng.randrange(0x30000, 0x110000)))
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def _word(rng: random.Random) -> str:
    return rng.choice(WORDS)


def _case(rng: random.Random, s: str) -> str:
    mode = rng.randrange(4)
    if mode == 0:
        return s.upper()
    if mode == 1:
        return s.title()
    if mode == 2:
        return "".join(c.upper() if rng.random() < 0.5 else c for c in s)
    return s


def _phrase(rng: random.Random, k: int) -> str:
    return " ".join(_word(rng) for _ in range(k))


def _pick(rng: random.Random, items) -> str:
    return items[rng.randrange(len(items))]


def _script_run(rng: random.Random, key: str | None = None) -> str:
    text = SCRIPTS[key or _pick(rng, sorted(SCRIPTS))]
    a = rng.randrange(len(text))
    return text[a:a + rng.randrange(1, 12)]


# Each kind: rng -> prompt. Listed in a fixed order (dict order is insertion order).
KINDS = {
    "emoji_name": lambda r: _case(r, _pick(r, EMOJI_NAMES)) if r.random() < 0.7 else _pick(r, EMOJI_NAMES),
    "words": lambda r: _case(r, _phrase(r, r.randrange(1, 7))),
    "random_letters": lambda r: "".join(r.choice("abcdefghijklmnopqrstuvwxyzABCXYZ")
                                         for _ in range(r.randrange(1, 25))),
    "accents": lambda r: " ".join(_case(r, _pick(r, ACCENTED)) for _ in range(r.randrange(1, 4))),
    "combining": lambda r: "".join(c + (_pick(r, COMBINING) * r.randrange(1, 3) if r.random() < 0.5 else "")
                                   for c in _phrase(r, 2)),
    "cjk": lambda r: _script_run(r, _pick(r, ["cjk", "cjk_astral", "cjk_compat"])) + (" " + _phrase(r, 1) if r.random() < 0.5 else ""),
    "emoji": lambda r: "".join(_pick(r, EMOJI + ZWJ) for _ in range(r.randrange(1, 5)))
                       + (" " + _phrase(r, 2) if r.random() < 0.5 else ""),
    "emoji_glued": lambda r: _word(r) + _pick(r, EMOJI + ZWJ) + _word(r),
    "punct_run": lambda r: "".join(r.choice(PUNCT) for _ in range(r.randrange(1, 20)))
                           + (_word(r) if r.random() < 0.5 else ""),
    "punct_mixed": lambda r: r.choice(PUNCT).join(_phrase(r, r.randrange(2, 5)).split()),
    "digits": lambda r: " ".join(str(r.randrange(10 ** r.randrange(1, 12))) for _ in range(r.randrange(1, 4)))
                        + " " + _word(r) + r.choice(["", "2", "3d", "4k", "1st", "x10", "v2.0"]),
    "long_word": lambda r: r.choice(["", "a ", "cat "]) + _long_word(r) + r.choice(["", " dog", "!"]),
    "over_long": lambda r: _case(r, _phrase(r, r.randrange(25, 120))),
    "empty_or_space": lambda r: "".join(_pick(r, SPACES) for _ in range(r.randrange(0, 5))),
    "control": lambda r: "".join((_pick(r, CONTROL) if r.random() < 0.4 else _word(r)) for _ in range(r.randrange(1, 6))),
    "bidi": lambda r: "".join(_pick(r, BIDI) + _pick(r, [_word(r), _script_run(r, "arabic"), _script_run(r, "hebrew")])
                              for _ in range(r.randrange(1, 4))),
    "script": lambda r: " ".join(_script_run(r) for _ in range(r.randrange(1, 4))),
    "fullwidth": lambda r: _script_run(r, "fullwidth") + _pick(r, ["", " cat", "ｃａｔ"]),
    "spaces_mixed": lambda r: _pick(r, SPACES).join(_phrase(r, r.randrange(2, 5)).split()) + _pick(r, SPACES),
    "special_literal": lambda r: _pick(r, ["", "a ", "cat", "dog "]) + _pick(r, SPECIAL) + _pick(r, ["", " b", "cat", "!"]),
    "any_unicode": lambda r: "".join(_any_code_point(r) for _ in range(r.randrange(1, 8))),
    "any_unicode_in_words": lambda r: _word(r) + _any_code_point(r) + _word(r) + " " + _any_code_point(r),
    "soup": lambda r: "".join(r.choice([_word(r), " ", _pick(r, EMOJI), _pick(r, CONTROL), _pick(r, COMBINING),
                                        r.choice(PUNCT), _script_run(r), _any_code_point(r)])
                              for _ in range(r.randrange(1, 15))),
}


def _long_word(r: random.Random) -> str:
    n = r.choice([99, 100, 101, 102, 150, 400, r.randrange(90, 300)])
    unit = r.choice(["a", "ab", "cat", "é", "e\u0301", "İ", "x", "ß", "9", "ﬁ"])
    return (unit * n)[:n] if len(unit) == 1 else unit * (n // len(unit) + 1)


def corpus(seed: int = SEED, n: int = SIZE) -> list[str]:
    """``n`` prompts, the same for the same ``seed``: every kind in turn, then a seeded draw."""
    rng = random.Random(seed)
    kinds = list(KINDS.values())
    out = []
    for i in range(n):
        out.append(kinds[i % len(kinds)](rng))
    return out


# The committed golden edge cases: hand-picked, one per line of thought. Python's `tokenizers`
# (lrf.models.text.load_tokenizer) gives their ids; every client must reproduce them.
GOLDEN_PROMPTS = [
    "", " ", "\t\n\r ", "cat face", "Cat Face", "CAT FACE", "grinning face with big eyes",
    "face with tears of joy", "smiling face with heart-eyes", "thumbs up: medium skin tone",
    "café", "naïve résumé", "Ångström", "Straße", "İstanbul", "ﬁne", "crème brûlée",
    "e\u0301", "a\u0308\u0308b", "\u0301", "ΟΔΟΣ", "ΣΑΣ", "Σ", "кошка КОШКА",
    "猫的脸", "日本語のテキスト", "한국어", "a\U00020000b", "\uF900x", "\u9FFF\u9FA5",
    "\U0001F600", "\U0001F970", "cat \U0001F431 face", "\U0001F468\u200D\U0001F469\u200D\U0001F467",
    "\u2764\ufe0f", "\U0001F1FA\U0001F1F8", "hello!!!", "...", "a.b,c;d", "$100 + 5% = ~",
    "¡hola! ¿qué?", "“quoted” — dash", "3.14159", "12345678901234567890", "x" * 100, "x" * 101,
    "a " + "é" * 101, "a " + "e\u0301" * 101, " ".join(["cat"] * 40), "a [MASK] cat",
    "[CLS][SEP]", "[PAD]", "x[UNK]y", "[CLS", "\u0130\u0301", "[mask]", "[MA\x00SK]", "a\x00b", "a\x7fb\x85c", "tab\there", "line\nbreak",
    "zero\u200bwidth", "\u202eevil\u202c", "\ufeffbom", "\uE000private", "ＡＢＣ！", "ⅷ№™",
    "แมวยิ้ม", "قطة", "बिल्ली", "\u08E2x", "\u2E52", "\u2C2F",
]


def write_golden(path: str) -> dict:
    """Write the golden file: prompt, ids and attention mask for each GOLDEN_PROMPTS entry."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from lrf.models.text import MAX_TOKENS, load_tokenizer
    tok = load_tokenizer()
    cases, vocab = [], {}
    for prompt in GOLDEN_PROMPTS:
        enc = tok.encode(prompt)
        cases.append({"prompt": prompt, "ids": enc.ids})
        vocab.update(zip(enc.tokens, enc.ids))
    for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        vocab[token] = tok.token_to_id(token)
    doc = {"about": "Prompt -> token ids of all-MiniLM-L6-v2's tokenizer.json with Python "
                    "tokenizers (runtime/TOKENIZER.md), made by `python tests/tokenizer_corpus.py "
                    "--write-golden`. Do not edit by hand; the attention mask is all ones. "
                    "`vocab` is the part of vocab.txt (token -> id = line number) these cases use: "
                    "greedy longest-match WordPiece gives the same ids with it as with the whole "
                    "file for these prompts, so the Kotlin and Swift tests need not carry vocab.txt.",
           "max_tokens": MAX_TOKENS, "vocab": dict(sorted(vocab.items(), key=lambda kv: kv[1])),
           "cases": cases}
    text = json.dumps(doc, ensure_ascii=True, indent=0) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return doc


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-golden"]:
        here = os.path.dirname(os.path.abspath(__file__))
        doc = write_golden(os.path.join(here, "fixtures", "tokenizer_golden.json"))
        print(f"wrote {len(doc['cases'])} cases")
    else:
        print(json.dumps(corpus()[:int(sys.argv[1]) if sys.argv[1:] else 50], ensure_ascii=False, indent=1))
