"""Word-level shell rules that need no state: field splitting, brace expansion, tilde expansion, and what
``echo``/``printf``/``cat`` write (so ``echo NAME | xargs kubectl delete pod`` is read with its NAME)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

from envlabel.commands import is_known, program_of

#: bytes of a file envlabel reads for ``source``, ``< file`` or ``cat file |``
MAX_FILE = 1 << 20
BRACES = re.compile(r"\{[^{}]*(,|\.\.)[^{}]*\}")
_SEQUENCE = re.compile(r"^(-?\d+|[A-Za-z])\.\.(-?\d+|[A-Za-z])(?:\.\.(-?\d+))?$")


def field_split(pieces: list[tuple[str, bool, bool]]) -> list[str]:
    """Words from expanded pieces ``(text, split it, quoted)``: the unquoted results of expansions split on
    blanks, everything else kept whole; an unquoted expansion to nothing makes no word."""
    words: list[str] = []
    current, have = "", False
    for text, splittable, quoted in pieces:
        if not splittable:
            current += text
            have = have or quoted or bool(text)
            continue
        fields = text.split()
        if have and ((fields and text[0].isspace()) or (not fields and text)):
            words.append(current)
            current, have = "", False
        for index, value in enumerate(fields):
            if index:
                words.append(current)
                current = ""
            current += value
            have = True
        if fields and text[-1].isspace():
            words.append(current)
            current, have = "", False
    if have:
        words.append(current)
    return words


def braces(text: str, limit: int = 1000) -> list[str] | None:
    """Bash's brace expansion of an unquoted word (``pod-{a,b}``, ``db{1..3}``); None past ``limit`` words."""
    match = BRACES.search(text)
    if match is None:
        return [text]
    inner = match.group()[1:-1]
    sequence = _SEQUENCE.match(inner)
    if sequence:
        items = sequence_of(sequence[1], sequence[2], sequence[3])
    else:
        items = inner.split(",") if "," in inner else [match.group()]
    if items is None:
        return None
    out: list[str] = []
    for item in items:
        if item == match.group():  # {a..b} that is no sequence: left as it is, as bash does
            return [text]
        rest = braces(text[:match.start()] + item + text[match.end():], limit)
        if rest is None or len(out) + len(rest) > limit:
            return None
        out.extend(rest)
    return out


def sequence_of(first: str, last: str, step: str | None, limit: int = 1000) -> list[str] | None:
    """``{1..5}``, ``{a..e}``, ``{0..10..2}``; None when it is too long to follow."""
    numeric = first.lstrip("-").isdigit() and last.lstrip("-").isdigit()
    if not numeric and (first.isdigit() or last.isdigit() or len(first) != 1 or len(last) != 1):
        return None
    a, b = (int(first), int(last)) if numeric else (ord(first), ord(last))
    by = max(abs(int(step)) if step else 1, 1) * (1 if b >= a else -1)
    if abs(b - a) // abs(by) > limit:
        return None
    return [str(n) if numeric else chr(n) for n in range(a, b + (1 if b >= a else -1), by)]


def tilde(text: str, home: str) -> str:
    """``~`` and ``~/x`` from ``home``, ``~user`` from the password database."""
    head, sep, rest = text.partition("/")
    if head == "~":
        return home + sep + rest
    expanded = os.path.expanduser(head)
    return text if expanded == head else expanded + sep + rest


def read_file(path: str, cwd: str) -> str | None:
    """The text of a file the command reads (relative to ``cwd``), or None: unreadable, too big, or not known."""
    if not path or not is_known(path) or not is_known(cwd):
        return None
    try:
        with open(os.path.join(cwd, os.path.expanduser(path)), "rb") as handle:
            data = handle.read(MAX_FILE + 1)
    except (OSError, ValueError):
        return None
    return None if len(data) > MAX_FILE else data.decode("utf-8", errors="replace")


def output_of(argv: tuple[str, ...], stdin: str | None, cwd: str) -> str | None:
    """What ``echo``, ``printf`` (a format alone) or ``cat`` writes, when the line shows it; else None."""
    writer = _WRITERS.get(program_of(argv[0]))
    if writer is None or not all(is_known(a) for a in argv[1:]):
        return None
    return writer(list(argv[1:]), stdin, cwd)


def _echo(args: list[str], stdin: str | None, cwd: str) -> str | None:
    newline = True
    while args and re.fullmatch(r"-[neE]+", args[0]):
        newline = newline and "n" not in args[0]
        args = args[1:]
    return " ".join(args) + ("\n" if newline else "")


def _printf(args: list[str], stdin: str | None, cwd: str) -> str | None:
    if len(args) != 1 or "%" in args[0]:
        return None
    return args[0].encode("utf-8", "surrogateescape").decode("unicode_escape", errors="replace")


def _cat(args: list[str], stdin: str | None, cwd: str) -> str | None:
    if any(a.startswith("-") and a != "-" for a in args):
        return None
    files = [a for a in args if a != "-"]
    if not files:
        return stdin
    texts = [read_file(f, cwd) for f in files]
    return None if any(t is None for t in texts) else "".join(t or "" for t in texts)


_WRITERS: Mapping[str, Callable[[list[str], str | None, str], str | None]] = {
    "echo": _echo, "printf": _printf, "cat": _cat}
