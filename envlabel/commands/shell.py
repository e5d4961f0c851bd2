"""A command line split into the simple commands it runs, as bash would run them, without running anything.

    [c.argv for c in split_line("export AWS_PROFILE=prod && sudo -E bash -c 'aws s3 rb s3://b' | tee log", ctx)]
    # [('aws', 's3', 'rb', 's3://b'), ('tee', 'log')]   (the aws command's environment has AWS_PROFILE=prod)

What is followed, so that the program and its environment are the ones that would run:

- lists and pipelines (``&&``, ``||``, ``;``, ``&``, ``|``, newlines), subshells ``( ... )`` (their variables
  stay inside, as do those of a pipeline's stages), groups ``{ ...; }``, ``if``/``while``/``for``/``case``,
  function bodies; here-documents and here-strings (a command's standard input);
- ``$( ... )``, backticks and ``<( ... )``: the inner commands run too; their output is unknown;
- variables: ``VAR=value`` prefixes (that command's environment), ``export``, ``unset``, ``set -a``,
  ``declare -x``, ``read``, ``cd`` (:mod:`envlabel.commands.builtins`); ``$VAR`` and ``${VAR:-default}``
  expanded from what is known (the context's environment, assignments on the line) with field splitting,
  ``~`` and brace expansion (``pod-{a,b}``); a variable neither the line nor the environment sets is unknown,
  never taken as empty;
- shells and their like (``bash -c``/``sh -c``/``zsh -c`` STRING, a script on a shell's stdin, ``eval``,
  ``source FILE``, ``watch``, ``ssh HOST CMD``, ``su -c``): their code is split in turn;
- wrappers (:mod:`envlabel.commands.wrappers`): ``env``, ``sudo``, ``xargs``, ``find -exec``, ``timeout``,
  ``nohup``, ``nice``, ``time``, ``command``, ``exec``, ``aws-vault exec``, ``python -m awscli``...

What cannot be known is marked, never guessed: a word holding :data:`envlabel.commands.UNKNOWN`. A shell
running code the line does not show (``bash -c "$X"``, ``curl ... | sh``) gives a command with ``hidden``
set; one run after a ``source`` that could not be read has ``tainted`` set. Scripts run by path
(``./deploy.sh``) are not read.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from envlabel.commands import CommandContext, is_known, shown, unknown
from envlabel.commands.builtins import run_builtin
from envlabel.commands.lexer import ARITH, LIT, SUB, VAR, Operator, Part, Redirect, ShellSyntaxError, Word, lex
from envlabel.commands.words import BRACES, braces, field_split, output_of, read_file, tilde
from envlabel.commands.wrappers import unwrap

#: nesting (bash -c in bash -c, $( ) in $( )) and simple commands beyond which a line is not understood
MAX_DEPTH = 12
MAX_COMMANDS = 4096
#: words that open or close a compound command: what follows them is a command
RESERVED = frozenset({"if", "then", "elif", "else", "fi", "do", "done", "while", "until", "!", "{", "}", "esac"})
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(\+?)=")
_PARAMETER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])(?:(:?[-=+?])(.*))?$", re.DOTALL)
_CASE_END = (";;", ";&", ";;&")
Token = Word | Operator | Redirect


@dataclass(frozen=True, slots=True)
class SimpleCommand:
    """One program run: its words (unknown parts marked), environment, directory and standard input."""

    argv: tuple[str, ...]
    environ: Mapping[str, str]
    cwd: str
    stdin: str | None
    #: as written (the simple command's text on its line), for messages
    text: str
    #: why the code it runs cannot be seen (``bash -c "$X"``): "" when it can
    hidden: str = ""
    #: why its environment cannot be known (it runs after an unreadable ``source``): "" when it can
    tainted: str = ""


def split_line(line: str, context: CommandContext) -> list[SimpleCommand]:
    """The simple commands ``line`` runs, in order; raises ShellSyntaxError when it cannot be split."""
    shell = Shell()
    shell.run_text(line, State(dict(context.environ), {}, context.cwd, None), 0, stdin=context.stdin)
    return shell.out


def split_argv(argv: Sequence[str], context: CommandContext) -> list[SimpleCommand]:
    """The simple commands one argument vector runs (itself, or what its wrappers run); no expansion."""
    if not argv:
        return []
    shell = Shell()
    shell.command(tuple(argv), Run(dict(context.environ), context.cwd, context.stdin, shlex.join(argv)), None, 0)
    return shell.out


@dataclass(slots=True)
class State:
    """A shell's variables: ``exported`` is the environment its children get."""

    exported: dict[str, str]
    local: dict[str, str]
    cwd: str
    #: $0, $1...; None when unknown (the top-level line)
    positional: list[str] | None
    allexport: bool = False
    tainted: str = ""

    def copy(self) -> State:
        return State(dict(self.exported), dict(self.local), self.cwd,
                     None if self.positional is None else list(self.positional), self.allexport, self.tainted)

    def lookup(self, name: str) -> str:
        if name in self.local:
            return self.local[name]
        if name in self.exported:
            return self.exported[name]
        return self.cwd if name == "PWD" else unknown(f"${name}")

    def is_set(self, name: str) -> bool:
        return name in self.local or name in self.exported

    def assign(self, name: str, value: str, *, export: bool = False) -> None:
        if export or self.allexport or name in self.exported:
            self.exported[name] = value
            self.local.pop(name, None)
        else:
            self.local[name] = value

    def unset(self, name: str) -> None:
        self.exported.pop(name, None)
        self.local[name] = ""


@dataclass(frozen=True, slots=True)
class Run:
    """How one program is run: its environment, directory, standard input and the text it was written as."""

    environ: dict[str, str]
    cwd: str
    stdin: str | None
    text: str
    hidden: str = ""


@dataclass(slots=True)
class _Walk:
    """Where a walk over one list of tokens is: the command being collected, and what encloses it."""

    state: State
    stdin: str | None
    saved: list[State] = field(default_factory=list)  # the enclosing shells' states, inside ( ... )
    modes: list[str] = field(default_factory=list)  # case ... esac: "pattern" until ")", then "body"
    words: list[Word] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)
    piped: str | None = None
    after_pipe: bool = False


class Shell:
    """Runs nothing: walks a line as bash would, collecting the simple commands into :attr:`out`."""

    def __init__(self) -> None:
        self.out: list[SimpleCommand] = []

    def run_text(self, text: str, state: State, depth: int, stdin: str | None = None) -> None:
        """Split and walk ``text`` (a line, a ``bash -c`` string, a sourced file) in ``state``."""
        if depth > MAX_DEPTH:
            raise ShellSyntaxError(f"commands are nested more than {MAX_DEPTH} levels deep")
        tokens = lex(text)
        walk = _Walk(state, stdin)
        i = 0
        while i < len(tokens):
            i = self.step(tokens, i, walk, text, depth)
        self.finish(walk, text, depth, walk.state)

    def step(self, tokens: list[Token], i: int, walk: _Walk, text: str, depth: int) -> int:
        """Take the token at ``i`` into the walk; returns the index of the next one."""
        token = tokens[i]
        if walk.modes and walk.modes[-1] == "pattern":  # case patterns are no commands
            if isinstance(token, Word) and token.bare == "esac":
                walk.modes.pop()
            elif isinstance(token, Operator) and token.op == ")":
                walk.modes[-1] = "body"
            return i + 1
        if isinstance(token, Redirect):
            walk.redirects.append(token)
        elif isinstance(token, Word):
            return self.word(tokens, i, walk, depth)
        elif token.op == "(":
            return self.open_paren(tokens, i, walk)
        else:
            self.operator(token.op, walk, text, depth)
        return i + 1

    def word(self, tokens: list[Token], i: int, walk: _Walk, depth: int) -> int:
        word = tokens[i]
        assert isinstance(word, Word)
        if not walk.words and word.bare == "case":  # case WORD in: the word may substitute commands
            if i + 1 < len(tokens) and isinstance(tokens[i + 1], Word):
                self.expand(tokens[i + 1], walk.state, depth)  # type: ignore[arg-type]
                i += 1
            while i + 1 < len(tokens) and not _is_word(tokens[i + 1], "in"):
                i += 1  # newlines before "in"
            walk.modes.append("pattern")
            return i + 2
        if not walk.words and word.bare == "esac" and walk.modes:
            walk.modes.pop()
        else:
            walk.words.append(word)
        return i + 1

    def open_paren(self, tokens: list[Token], i: int, walk: _Walk) -> int:
        if not walk.words:  # a subshell: its variables stay inside
            walk.saved.append(walk.state)
            walk.state = walk.state.copy()
            return i + 1
        closes = i + 1 < len(tokens) and isinstance(tokens[i + 1], Operator) and tokens[i + 1].op == ")"  # type: ignore[union-attr]
        if len(walk.words) - (walk.words[0].bare == "function") == 1 and closes:
            walk.words = []  # NAME ( ): a function definition; its body's commands follow
            return i + 2
        raise ShellSyntaxError(f"unexpected ( after {walk.words[0].text!r}")

    def operator(self, op: str, walk: _Walk, text: str, depth: int) -> None:
        pipe_next = op in ("|", "|&")
        # a pipeline's stages, and what & sends to the background, run in subshells of their own
        separate = walk.after_pipe or pipe_next or op == "&"
        output = self.finish(walk, text, depth, walk.state.copy() if separate else walk.state)
        walk.piped, walk.after_pipe = (output if pipe_next else None), pipe_next
        if op == ")" and walk.saved:
            walk.state = walk.saved.pop()
        elif op in _CASE_END and walk.modes:
            walk.modes[-1] = "pattern"

    def finish(self, walk: _Walk, text: str, depth: int, state: State) -> str | None:
        """Run the command the walk collected; returns what it writes when that is known (``echo x |``)."""
        words, redirects = walk.words, walk.redirects
        walk.words, walk.redirects = [], []
        stdin = self.redirected(redirects, state, depth, walk.piped if walk.after_pipe else walk.stdin)
        words = _strip_reserved(words)
        if not words or self.compound(words, state, depth):
            return None
        begin, end = words[0].start, max(w.end for w in words)
        assignments: list[tuple[str, str]] = []
        while words and (found := _assignment(words[0])) is not None:
            name, append, value_word = found
            expanded = self.expand(value_word, state, depth, split=False)[0]
            assignments.append((name, (state.lookup(name) if append else "") + expanded))
            words = words[1:]
        argv = [expanded for word in words for expanded in self.expand(word, state, depth)]
        if not words:
            for name, value in assignments:
                state.assign(name, value)
            return None
        if not argv:
            return None
        run = Run({**state.exported, **dict(assignments)}, state.cwd, stdin, text[begin:end].strip())
        return self.command(tuple(argv), run, state, depth)

    def compound(self, words: list[Word], state: State, depth: int) -> bool:
        """``for NAME in ...``, ``select``, ``[[ ... ]]``: no program runs, but their words may substitute
        commands (and the loop's variable becomes unknown)."""
        first = words[0].bare
        if first not in ("for", "select", "[["):
            return False
        if first != "[[" and len(words) > 1 and words[1].bare:
            state.assign(words[1].text, unknown(f"${words[1].text}"))
        for word in words[2 if first != "[[" else 1:]:
            self.expand(word, state, depth)
        return True

    def command(self, argv: tuple[str, ...], run: Run, state: State | None, depth: int) -> str | None:
        """One program with its arguments: a builtin that changes the shell's state, a wrapper around another
        program, or a program run. Returns its output when that is known."""
        if len(self.out) >= MAX_COMMANDS:
            raise ShellSyntaxError(f"the line runs more than {MAX_COMMANDS} commands")
        if state is not None and is_known(argv[0]) and run_builtin(self, argv, state, depth, run.stdin):
            return None
        inner = unwrap(argv, run.environ, run.cwd, run.stdin)
        if inner is None:
            self.out.append(SimpleCommand(argv, run.environ, run.cwd, run.stdin, run.text, run.hidden,
                                          state.tainted if state is not None else ""))
            return output_of(argv, run.stdin, run.cwd)
        if inner.script is None:
            for one in inner.argvs:
                self.command(one, Run(inner.environ, inner.cwd, inner.stdin, run.text, run.hidden or inner.hidden),
                             None, depth)
        elif is_known(inner.script):  # bash -c, ssh, watch: the code is split in turn
            sub = State(dict(inner.environ), {}, inner.cwd, inner.positional,
                        tainted=state.tainted if state is not None else "")
            self.run_text(inner.script, sub, depth + 1, stdin=inner.stdin)
        else:
            self.out.append(SimpleCommand(argv, run.environ, run.cwd, run.stdin, run.text,
                                          f"it runs code computed when it runs ({shown(inner.script)[:120]}), "
                                          "which envlabel cannot see; run the commands themselves"))
        return None

    def hidden_code(self, argv: tuple[str, ...], state: State, reason: str) -> None:
        """Record a builtin that runs code the line does not show (``eval "$X"``)."""
        self.out.append(SimpleCommand(argv, dict(state.exported), state.cwd, None, shlex.join(map(shown, argv)),
                                      reason, state.tainted))

    def redirected(self, redirects: list[Redirect], state: State, depth: int, stdin: str | None) -> str | None:
        """What the command reads on its stdin (None: unknown), its redirections applied. Every target and
        here-document is expanded, for the commands it substitutes."""
        for redirect in redirects:
            if redirect.op in ("<<", "<<-"):
                stdin = self.expand(Word(redirect.body or [], 0, 0), state, depth, split=False)[0]
            elif redirect.op == "<<<":
                stdin = self.expand(redirect.target, state, depth, split=False)[0] + "\n"
            else:
                target = self.expand(redirect.target, state, depth, split=False)[0]
                if redirect.op in ("<", "<>"):
                    stdin = read_file(target, state.cwd)
        return stdin if stdin is None or is_known(stdin) else None

    # -- expansion ----------------------------------------------------------------------------------
    def expand(self, word: Word, state: State, depth: int, *, split: bool = True) -> list[str]:
        """The words ``word`` expands to (brace, tilde, parameter expansion, field splitting); what is
        computed at run time is marked unknown, and substituted commands are walked."""
        parts = word.parts
        if split and any(p.kind == LIT and not p.quoted and BRACES.search(p.text) for p in parts):
            expanded = braces(parts[0].text) if len(parts) == 1 else None
            return expanded if expanded is not None else [unknown(word.text)]  # mixed with quotes: not followed
        pieces = [self.piece(part, index, state, depth) for index, part in enumerate(parts)]
        return field_split(pieces) if split else ["".join(p[0] for p in pieces)]

    def piece(self, part: Part, index: int, state: State, depth: int) -> tuple[str, bool, bool]:
        """One part expanded: (its text, whether field splitting applies, quoted)."""
        if part.kind == LIT:
            value = part.text
            if index == 0 and not part.quoted and value.startswith("~"):
                value = tilde(value, state.lookup("HOME"))
            return value, False, part.quoted
        if part.kind == VAR:
            value = self.parameter(part.text, state)
            return value, is_known(value) and not part.quoted, part.quoted
        if part.kind == ARITH:
            return unknown(f"$(({part.text[:60]}))"), False, part.quoted
        self.run_text(part.text, state.copy(), depth + 1)  # $( ... ), backticks, <( ... ): their commands run
        opening = "$(" if part.kind == SUB else "<("
        return unknown(f"{opening}{part.text[:60]}{'...' if len(part.text) > 60 else ''})"), False, part.quoted

    def parameter(self, body: str, state: State) -> str:
        """``$NAME`` or the body of ``${...}``: its value, or an unknown word."""
        if body.startswith("#") and len(body) > 1:  # ${#NAME}: its length
            value = self.parameter(body[1:], state)
            return str(len(value)) if is_known(value) else unknown("${" + body + "}")
        match = _PARAMETER.match(body)
        if match is None:
            return unknown("${" + body + "}")
        name, op, default = match.groups()
        value = self.value_of(name, state)
        if not op or not is_known(value):
            return value
        if any(c in default for c in "$`'\"\\"):
            return unknown("${" + body + "}")  # a default that itself expands: not followed
        return _defaulted(name, op, default, value, state)

    def value_of(self, name: str, state: State) -> str:
        """A parameter's value: a variable, a positional parameter ($1, $@, $#), or unknown ($?, $$)."""
        positional = state.positional
        if name.isdigit():
            index = int(name)
            return positional[index] if positional is not None and index < len(positional) else unknown(f"${name}")
        if name in ("@", "*", "#"):
            if positional is None:
                return unknown(f"${name}")
            return " ".join(positional[1:]) if name != "#" else str(len(positional) - 1)
        return unknown(f"${name}") if name in ("?", "$", "!", "-") else state.lookup(name)


def _is_word(token: Token, text: str) -> bool:
    return isinstance(token, Word) and token.bare == text


def _defaulted(name: str, op: str, default: str, value: str, state: State) -> str:
    """``${NAME-x}``, ``${NAME:-x}``, ``${NAME:=x}``, ``${NAME:+x}``, ``${NAME?}`` of a known value."""
    empty = (not state.is_set(name) and not name.isdigit()) or (op.startswith(":") and value == "")
    kind = op.lstrip(":")
    if kind == "=" and empty:
        state.assign(name, default)
    if kind in ("-", "="):
        return default if empty else value
    if kind == "+":
        return "" if empty else default
    return value


def _strip_reserved(words: list[Word]) -> list[Word]:
    """The command without the reserved words that open it (``then``, ``do``, ``{``, ``function NAME``)."""
    while words and (words[0].bare in RESERVED or words[0].bare == "function"):
        words = words[2:] if words[0].bare == "function" else words[1:]
    return words


def _assignment(word: Word) -> tuple[str, bool, Word] | None:
    """``NAME=value`` (or ``NAME+=value``) at the start of a command: the name, append, the value's word."""
    if not word.parts or word.parts[0].kind != LIT or word.parts[0].quoted:
        return None
    match = _ASSIGNMENT.match(word.parts[0].text)
    if match is None:
        return None
    rest = word.parts[0].text[match.end():]
    value = Word(([Part(LIT, rest)] if rest else []) + word.parts[1:], word.start, word.end)
    return match[1], bool(match[2]), value
