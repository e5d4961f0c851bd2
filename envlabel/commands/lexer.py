"""Shell words and operators, lexed as bash lexes them; nothing is expanded here (that needs the shell's state,
which :mod:`envlabel.commands.shell` keeps).

    >>> [t.op if isinstance(t, Operator) else t.text for t in lex("AWS_PROFILE=prod aws s3 ls && echo 'a b'")]
    ['AWS_PROFILE=prod', 'aws', 's3', 'ls', '&&', 'a b']

A word is a list of :class:`Part`: literal text (quoted or not: quoting decides field splitting, brace
expansion and reserved words), ``$NAME``/``${...}``, ``$(...)``/backticks, ``$((...))`` and ``<(...)``. The text
of a command substitution is kept as written and lexed again when the shell runs it, so quotes inside it are
read by the same rules. Here-documents are read at the newline that follows their operator, as bash does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: literal text; a variable (``text`` is the name or the body of ``${...}``); a command substitution, an
#: arithmetic expansion or a process substitution (``text`` is the inner text)
LIT, VAR, SUB, ARITH, PROC = "lit", "var", "sub", "arith", "proc"

#: control operators, longest first (a newline is one too)
CONTROL = (";;&", "&&", "||", ";;", ";&", "|&", ";", "|", "&", "(", ")")
REDIRECTIONS = ("&>>", "<<<", "<<-", "&>", "<<", "<>", "<&", ">>", ">&", ">|", "<", ">")
_WORD_END = frozenset(" \t\n;&|()<>")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FD = re.compile(r"\d+(?=[<>])")
_SPECIAL = frozenset("0123456789@*#?$!-")
_ANSI = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "e": "\x1b", "E": "\x1b",
         "\\": "\\", "'": "'", '"': '"', "?": "?"}


class ShellSyntaxError(ValueError):
    """The line cannot be split as a shell would (an unbalanced quote or parenthesis)."""


@dataclass(frozen=True, slots=True)
class Part:
    kind: str
    text: str
    quoted: bool = False


@dataclass(slots=True)
class Word:
    parts: list[Part]
    start: int
    end: int

    @property
    def text(self) -> str:
        """The word as a plain string when it is all literal (quotes removed), else its parts joined."""
        return "".join(p.text for p in self.parts)

    @property
    def bare(self) -> str | None:
        """The text of a word that is one unquoted literal (a reserved word, an assignment's name), else None."""
        if len(self.parts) == 1 and self.parts[0].kind == LIT and not self.parts[0].quoted:
            return self.parts[0].text
        return None


@dataclass(slots=True)
class Operator:
    op: str
    start: int
    end: int


@dataclass(slots=True)
class Redirect:
    op: str
    target: Word
    start: int
    end: int
    #: the here-document's body (read at the next newline); quoted delimiter: one quoted literal part
    body: list[Part] | None = field(default=None)


Token = Word | Operator | Redirect


def lex(text: str) -> list[Token]:
    """The tokens of ``text``; raises ShellSyntaxError when a quote, ``$(``, ``${`` or backtick is unclosed."""
    tokens, _ = _Lexer(text).run(0, nested=False)
    return tokens


def substitution_end(text: str, start: int) -> int:
    """The index of the ``)`` that closes a ``$(`` whose inner text begins at ``start``."""
    return _Lexer(text).run(start, nested=True)[1]


class _Lexer:
    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.heredocs: list[tuple[Redirect, str, bool, bool]] = []

    def run(self, i: int, *, nested: bool) -> tuple[list[Token], int]:
        """Tokens from ``i``; ``nested``: stop at the ``)`` that closes the substitution (its index)."""
        tokens: list[Token] = []
        depth = 0
        while i < self.n:
            after = self._skip(i)
            if after != i:
                i = after
            elif self.s[i] == "\n":
                tokens.append(Operator("\n", i, i + 1))
                i = self._heredoc_bodies(i + 1)
            elif (op := self._control(i)) is not None:
                depth += (op == "(") - (op == ")")
                if nested and depth < 0:
                    return tokens, i
                tokens.append(Operator(op, i, i + len(op)))
                i += len(op)
            else:
                token, i = self._word_or_redirect(i)
                tokens.append(token)
        if nested:
            raise ShellSyntaxError("a $( ... ) is not closed")
        if self.heredocs:
            self._heredoc_bodies(self.n)
        return tokens, i

    def _skip(self, i: int) -> int:
        """Past blanks, a line continuation or a comment at ``i`` (``i`` itself when there is none)."""
        if self.s[i] in " \t":
            return i + 1
        if self.s.startswith("\\\n", i):
            return i + 2
        return self._line_end(i) if self.s[i] == "#" else i

    def _control(self, i: int) -> str | None:
        """The control operator at ``i``; None for a word, a redirection or a process substitution."""
        if (self.s[i] in "<>" and self.s.startswith("(", i + 1)) or self._redirection(i) is not None:
            return None
        return next((o for o in CONTROL if self.s.startswith(o, i)), None)

    def _word_or_redirect(self, i: int) -> tuple[Token, int]:
        found = None if self.s[i] in "<>" and self.s.startswith("(", i + 1) else self._redirection(i)
        if found is None:
            return self._word(i)
        op, after = found
        target, end = self._target(after, op)
        redirect = Redirect(op, target, i, end)
        if op in ("<<", "<<-"):
            quoted = any(p.quoted for p in target.parts)
            self.heredocs.append((redirect, target.text, op == "<<-", quoted))
        return redirect, end

    def _line_end(self, i: int) -> int:
        end = self.s.find("\n", i)
        return self.n if end < 0 else end

    def _redirection(self, i: int) -> tuple[str, int] | None:
        fd = _FD.match(self.s, i)
        at = fd.end() if fd else i
        op = next((o for o in REDIRECTIONS if self.s.startswith(o, at)), None)
        if op is None or (fd and op.startswith("&")):
            return None
        return op, at + len(op)

    def _target(self, i: int, op: str) -> tuple[Word, int]:
        while i < self.n and self.s[i] in " \t":
            i += 1
        if i >= self.n or self.s[i] in _WORD_END:
            raise ShellSyntaxError(f"the redirection {op} is not followed by a word")
        return self._word(i)

    def _heredoc_bodies(self, i: int) -> int:
        """Read the bodies of the here-documents opened on the line just ended; returns where the next line
        starts."""
        for redirect, delimiter, strip_tabs, quoted in self.heredocs:
            lines: list[str] = []
            while i < self.n:
                end = self._line_end(i)
                line = self.s[i:end]
                i = min(end + 1, self.n)
                if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                    break
                lines.append(line.lstrip("\t") if strip_tabs else line)
            body = "".join(line + "\n" for line in lines)
            redirect.body = [Part(LIT, body, True)] if quoted else self._text_parts(body)
        self.heredocs = []
        return i

    def _text_parts(self, body: str) -> list[Part]:
        """A here-document body with an unquoted delimiter: expansions as in double quotes, quotes literal."""
        inner = _Lexer(body)
        parts, _ = inner._double(0, terminator=None)
        return parts

    # -- words ----------------------------------------------------------------------------------
    def _word(self, i: int) -> tuple[Word, int]:
        s, start = self.s, i
        parts: list[Part] = []
        buf: list[str] = []

        def flush() -> None:
            if buf:
                parts.append(Part(LIT, "".join(buf)))
                buf.clear()

        if s[i] in "<>":  # <( ... ) or >( ... ): a process substitution is a word of its own
            end = substitution_end(s, i + 2)
            return Word([Part(PROC, s[i + 2:end])], start, end + 1), end + 1
        while i < self.n and s[i] not in _WORD_END:
            c = s[i]
            if c == "\\":
                if s.startswith("\n", i + 1):
                    i += 2
                    continue
                flush()
                parts.append(Part(LIT, s[i + 1:i + 2] or "\\", True))
                i += 2
            elif c == "'":
                end = s.find("'", i + 1)
                if end < 0:
                    raise ShellSyntaxError("a single quote (') is not closed")
                flush()
                parts.append(Part(LIT, s[i + 1:end], True))
                i = end + 1
            elif c == '"' or (c == "$" and s.startswith('"', i + 1)):
                flush()
                inner, i = self._double(i + (2 if c == "$" else 1), terminator='"')
                parts.extend(inner or [Part(LIT, "", True)])
            elif c == "$" and s.startswith("'", i + 1):
                flush()
                text, i = self._ansi_c(i + 2)
                parts.append(Part(LIT, text, True))
            elif c in "$`":
                part, i = self._expansion(i, quoted=False)
                if part is None:
                    buf.append(c)
                    i += 1
                else:
                    flush()
                    parts.append(part)
            else:
                buf.append(c)
                i += 1
        flush()
        return Word(parts, start, i), i

    def _double(self, i: int, terminator: str | None) -> tuple[list[Part], int]:
        """Parts of a double-quoted string from ``i`` (after the quote) to its closing quote (or the end)."""
        s = self.s
        parts: list[Part] = []
        buf: list[str] = []

        def flush() -> None:
            if buf:
                parts.append(Part(LIT, "".join(buf), True))
                buf.clear()

        escapable = '$`"\\\n' if terminator else "$`\\\n"
        while i < self.n:
            c = s[i]
            if terminator and c == terminator:
                flush()
                return parts, i + 1
            if c == "\\" and i + 1 < self.n and s[i + 1] in escapable:
                if s[i + 1] != "\n":
                    buf.append(s[i + 1])
                i += 2
            elif c in "$`":
                part, i2 = self._expansion(i, quoted=True)
                if part is None:
                    buf.append(c)
                    i += 1
                else:
                    flush()
                    parts.append(part)
                    i = i2
            else:
                buf.append(c)
                i += 1
        if terminator:
            raise ShellSyntaxError('a double quote (") is not closed')
        flush()
        return parts, i

    def _expansion(self, i: int, quoted: bool) -> tuple[Part | None, int]:
        """The ``$...`` or backtick expansion at ``i``; None when the ``$`` is literal."""
        return self._backtick(i, quoted) if self.s[i] == "`" else self._dollar(i, quoted)

    def _backtick(self, i: int, quoted: bool) -> tuple[Part, int]:
        s, j = self.s, i + 1
        buf: list[str] = []
        while j < self.n and s[j] != "`":
            if s[j] == "\\" and j + 1 < self.n and s[j + 1] in "`$\\":
                j += 1
            buf.append(s[j])
            j += 1
        if j >= self.n:
            raise ShellSyntaxError("a backtick (`) is not closed")
        return Part(SUB, "".join(buf), quoted), j + 1

    def _dollar(self, i: int, quoted: bool) -> tuple[Part | None, int]:
        s = self.s
        nxt = s[i + 1:i + 2]
        if s.startswith("((", i + 1):
            end = self._arith_end(i + 3)
            return Part(ARITH, s[i + 3:end], quoted), end + 2
        if nxt in ("(", "{"):
            end = substitution_end(s, i + 2) if nxt == "(" else self._brace_end(i + 2)
            return Part(SUB if nxt == "(" else VAR, s[i + 2:end], quoted), end + 1
        if name := _NAME.match(s, i + 1):
            return Part(VAR, name.group(), quoted), name.end()
        if nxt and nxt in _SPECIAL:
            return Part(VAR, nxt, quoted), i + 2
        return None, i

    def _arith_end(self, i: int) -> int:
        depth = 0
        while i < self.n:
            if self.s[i] == "(":
                depth += 1
            elif self.s[i] == ")":
                if depth == 0 and self.s.startswith("))", i):
                    return i
                depth -= 1
            i += 1
        raise ShellSyntaxError("a $(( ... )) is not closed")

    def _brace_end(self, i: int) -> int:
        depth, s = 0, self.s
        while i < self.n:
            c = s[i]
            if c == "\\":
                i += 2
                continue
            if c == "'":
                end = s.find("'", i + 1)
                if end < 0:
                    break
                i = end
            elif c == '"':
                _, i = self._double(i + 1, terminator='"')
                continue
            elif c == "{":
                depth += 1
            elif c == "}":
                if depth == 0:
                    return i
                depth -= 1
            i += 1
        raise ShellSyntaxError("a ${ ... } is not closed")

    def _ansi_c(self, i: int) -> tuple[str, int]:
        """A ``$'...'`` string from ``i`` (after the quote), its escapes decoded as bash does."""
        s = self.s
        out: list[str] = []
        while i < self.n:
            c = s[i]
            if c == "'":
                return "".join(out), i + 1
            if c != "\\" or i + 1 >= self.n:
                out.append(c)
                i += 1
                continue
            e = s[i + 1]
            if e in _ANSI:
                out.append(_ANSI[e])
                i += 2
            elif e in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[e]
                digits = re.match(f"[0-9a-fA-F]{{1,{width}}}", s[i + 2:])
                if digits:
                    out.append(chr(min(int(digits.group(), 16), 0x10FFFF)))
                    i += 2 + len(digits.group())
                else:
                    out.append("\\" + e)
                    i += 2
            elif e in "01234567":
                digits = re.match(r"[0-7]{1,3}", s[i + 1:])
                assert digits is not None
                out.append(chr(int(digits.group(), 8)))
                i += 1 + len(digits.group())
            else:
                out.append("\\" + e)
                i += 2
        raise ShellSyntaxError("a $'...' string is not closed")
