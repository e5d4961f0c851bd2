"""Text a person writes into the record (a reason, an author, an approver): visible, plain and bounded."""

from __future__ import annotations

import unicodedata

#: categories that show nothing: control, format (zero-width), and separators
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


class BadText(ValueError):
    """The text is empty to the eye, carries a control character, or is too long; the message says which."""


def plain_text(value: str, what: str, limit: int, *, lines: bool = False) -> str:
    """``value`` stripped, if it has a visible character, no control character and at most ``limit`` of them.

    ``what`` names the input in the message (``reason (--reason)``); ``lines`` also accepts line breaks and
    tabs. Raises BadText: an invisible reason or author vouches for nothing, and a terminal escape in one would
    rewrite what a listing of it shows."""
    text = value.strip()
    allowed = "\n\t" if lines else ""
    control = next((c for c in text if unicodedata.category(c) == "Cc" and c not in allowed), None)
    if control is not None:
        raise BadText(f"the {what} contains the control character U+{ord(control):04X}; write plain text")
    if all(unicodedata.category(c) in _INVISIBLE for c in text):
        raise BadText(f"the {what} has no visible characters; write it out in words")
    if len(text) > limit:
        raise BadText(f"the {what} is {len(text)} characters long; keep it to at most {limit}")
    return text
