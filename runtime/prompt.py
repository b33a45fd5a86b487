"""Prompts are untrusted input (issue 25): :func:`check_prompt` is the one gate a text prompt
passes before a tokenizer sees it, from the CLI or the API.

Any Unicode text a person can type is accepted unchanged (scripts, emoji with their zero-width
joiners, newlines and tabs). Refused, with one ``ValueError`` line that names the first offending
character by position and code point (never echoing it, so the line cannot drive a terminal):
a non-``str`` (bytes, None), an empty or all-whitespace prompt, more than MAX_PROMPT_CHARS
characters (checked before anything else is read, so a 1 MB prompt costs nothing), NUL, other
C0/C1 control characters, bidirectional controls (a prompt shown in a log or a UI must read as
it runs) and lone surrogates (which the Python API can hold but no encoder can write).
"""

from __future__ import annotations

import re

MAX_PROMPT_CHARS = 4096   # far above any text encoder's context (CLIP: 77 tokens)
# C0 controls but tab and newline (and carriage return), DEL and C1
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_prompt(text) -> str:
    """``text`` unchanged when it is an acceptable prompt (module doc), else ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"prompt must be a str (text), got {type(text).__name__}")
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt has {len(text)} characters, more than the "
                         f"{MAX_PROMPT_CHARS} characters a prompt may have; shorten it")
    if not text.strip():
        raise ValueError("prompt is empty (or only whitespace); describe the image to make")
    for pattern, what in ((_SURROGATE, "a lone surrogate (not a character: invalid UTF-16 "
                                       "from the caller)"),
                          (_BIDI, "a bidirectional control character"),
                          (_CONTROL, "a control character")):
        m = pattern.search(text)
        if m:
            code = ord(m.group())
            name = "NUL, " if code == 0 else ""
            raise ValueError(f"prompt character {m.start()} is {name}{what} (U+{code:04X}); "
                             "remove it")
    return text
