"""Foreign text made safe for a terminal: control characters shown, never obeyed.

Text llmctl did not write (GGUF metadata such as ``general.name``, a mirror's file names, an engine's log lines, a
remote's error messages) may carry escape sequences that retitle the terminal, move the cursor, hide or rewrite
what was printed, or bidi overrides that reorder it. ``printable`` replaces every control and format character with
its visible escape (``\\x1b``), so what is shown is what was there.
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls, DEL, and the format characters that reorder or hide text (bidi overrides and isolates,
# zero-width marks, the BOM)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _visible(match: re.Match[str]) -> str:
    c = match.group()
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def printable(value: object, *, newlines: bool = False) -> str:
    """``value`` as text with control characters as visible escapes; ``newlines`` keeps line breaks (and tabs)."""
    text = str(value)
    if newlines:
        return "\n".join(_UNSAFE.sub(_visible, line.replace("\t", "    ")) for line in text.split("\n"))
    return _UNSAFE.sub(_visible, text)


def has_control(text: str) -> bool:
    """Whether ``text`` holds a character ``printable`` would escape (or any other Unicode control)."""
    return bool(_UNSAFE.search(text)) or any(unicodedata.category(c) == "Cc" for c in text)
