"""The shell builtins that change what later commands run with: ``export``, ``unset``, ``cd``, ``set -a``,
``read``, ``source``, ``eval``... Each takes the expanded words and the shell state (:mod:`envlabel.commands.shell`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from envlabel.commands import is_known, shown, unknown
from envlabel.commands.words import read_file

if TYPE_CHECKING:
    from envlabel.commands.shell import Shell, State

#: builtins that change nothing a later command runs with
INERT = frozenset({"alias", "unalias", "true", "false", ":", "exit", "return", "break", "continue", "wait", "trap",
                   "shopt", "umask", "hash", "type", "jobs", "fg", "bg", "disown", "let", "test", "["})
_READ_VALUES = frozenset({"-p", "-d", "-t", "-n", "-N", "-u", "-a", "-C", "-c", "-O", "-s"})


def run_builtin(shell: Shell, argv: tuple[str, ...], state: State, depth: int, stdin: str | None) -> bool:
    """Apply the builtin ``argv`` runs to ``state``; False when it is no builtin of this table."""
    handler = BUILTINS.get(argv[0])
    if handler is None:
        return argv[0] in INERT
    handler(shell, list(argv[1:]), state, depth, stdin)
    return True


def _declare(shell: Shell, args: list[str], state: State, depth: int, stdin: str | None,
             *, exporting: bool = False) -> None:
    exporting = exporting or any(a.startswith("-") and "x" in a for a in args)
    for arg in (a for a in args if not a.startswith(("-", "+"))):
        key, eq, value = arg.partition("=")
        if eq:
            state.assign(key, value, export=exporting)
        elif exporting and key in state.local:
            state.assign(key, state.local[key], export=True)
        elif exporting and key not in state.exported:
            state.exported[key] = unknown(f"${key}")  # exported without a value envlabel has seen


def _export(shell: Shell, args: list[str], state: State, depth: int, stdin: str | None) -> None:
    _declare(shell, args, state, depth, stdin, exporting=True)


def _unset(shell: Shell, args: list[str], state: State, depth: int, stdin: str | None) -> None:
    for arg in (a for a in args if not a.startswith("-")):
        state.unset(arg)


def _cd(shell: Shell, args: list[str], state: State, depth: int, stdin: str | None) -> None:
    target = args[-1] if args and not args[-1].startswith("-") else state.exported.get("HOME", "")
    if args[-1:] == ["-"] or not target or not is_known(target):
        state.cwd = unknown("the directory cd changes to")
    else:
        state.cwd = os.path.normpath(os.path.join(state.cwd, os.path.expanduser(target)))


def _popd(shell: Shell, args: list[str], state: State, depth: int, stdin: str | None) -> None:
    state.cwd = unknown("the directory popd returns to")


def _set(shell: Shell, args: list[str], state: State, depth: int, stdin: str | None) -> None:
    for index, arg in enumerate(args):
        if arg == "--":
            state.positional = [state.positional[0] if state.positional else "sh", *args[index + 1:]]
            return
        short = arg.startswith("-") and not arg.startswith("--") and "a" in arg
        if short or (arg == "-o" and args[index + 1:index + 2] == ["allexport"]):
            state.allexport = True


def _read(shell: Shell, args: list[str], state: State, depth: int, stdin: str | None) -> None:
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _READ_VALUES:
            skip = True
        elif not arg.startswith("-"):
            state.assign(arg, unknown(f"${arg}"))


def _source(shell: Shell, args: list[str], state: State, depth: int, stdin: str | None) -> None:
    """``source FILE``: its commands run in this shell, so its variables (AWS_PROFILE...) are this shell's."""
    path = args[0] if args else ""
    content = read_file(path, state.cwd) if is_known(path) else None
    if content is None:
        state.tainted = (f"it runs after `source {shown(path)}`, which envlabel could not read, so the variables "
                         "and functions it defines (AWS_PROFILE, KUBECONFIG...) are unknown; set them on the "
                         "command line instead")
        return
    shell.run_text(content, state, depth + 1)


def _eval(shell: Shell, args: list[str], state: State, depth: int, stdin: str | None) -> None:
    code = " ".join(args)
    if is_known(code):
        shell.run_text(code, state, depth + 1, stdin=stdin)
        return
    shell.hidden_code(("eval", *args), state, f"eval runs code computed when it runs ({shown(code)[:120]}), which "
                                              "envlabel cannot see; run the commands themselves")


def _shift(shell: Shell, args: list[str], state: State, depth: int, stdin: str | None) -> None:
    if state.positional is not None:
        count = int(args[0]) if args and args[0].isdigit() else 1
        state.positional = state.positional[:1] + state.positional[1 + count:]


Builtin = Callable[["Shell", list[str], "State", int, "str | None"], None]

BUILTINS: dict[str, Builtin] = {
    "export": _export, "declare": _declare, "typeset": _declare, "local": _declare, "readonly": _declare,
    "unset": _unset, "cd": _cd, "pushd": _cd, "popd": _popd, "set": _set, "read": _read, "mapfile": _read,
    "readarray": _read, "source": _source, ".": _source, "eval": _eval, "shift": _shift,
}
