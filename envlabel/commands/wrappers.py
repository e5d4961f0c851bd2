"""Programs that run another program: what they run, with which environment (``sudo``, ``env``, ``xargs``,
``timeout``, ``bash -c``...). Used by :mod:`envlabel.commands.shell`; nothing here runs anything.

    unwrap(("env", "-i", "AWS_PROFILE=prod", "aws", "s3", "ls"), {"HOME": "/home/a"}, "/", None).argvs
    # [('aws', 's3', 'ls')]  with environ {"AWS_PROFILE": "prod"}

A wrapper given an option it does not know cannot be read exactly (the option may take the next word): then the
command is taken to start at the first word naming a program envlabel knows (an infrastructure tool, a shell,
another wrapper), so that ``sudo --new-flag aws ...`` is still read as the aws command it runs.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from envlabel.commands import READERS, is_known, program_of, shown, unknown

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SHELLS = frozenset({"bash", "sh", "zsh", "dash", "ksh", "ash", "mksh", "fish", "yash", "posh"})
#: what the AWS CLI's own credentials could come from, dropped where a wrapper substitutes its own
_AWS_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                    "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


@dataclass(slots=True)
class Inner:
    """What a wrapper runs: programs (each an argv), or shell code (``script``) split in turn."""

    argvs: list[tuple[str, ...]]
    environ: dict[str, str]
    cwd: str
    stdin: str | None
    script: str | None = None
    #: $0, $1... of the script (``bash -c 'CODE' arg0 arg1``)
    positional: list[str] | None = None
    #: why what it runs cannot be seen
    hidden: str = ""


@dataclass(frozen=True, slots=True)
class Options:
    """A program's options: short letters without and with a value, long names without and with a value."""

    flags: str = ""
    values: str = ""
    long_flags: frozenset[str] = frozenset()
    long_values: frozenset[str] = frozenset()


def parse_options(args: Sequence[str], spec: Options) -> tuple[int, list[tuple[str, str]]] | None:
    """Where the operands start in ``args`` and the options before them (``("u", "root")``, ``("E", "")``);
    None when an option is not in ``spec``: it may or may not take the next word."""
    found: list[tuple[str, str]] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and len(args[i]) > 1:
        if args[i] == "--":
            return i + 1, found
        taken = _long_option(args, i, spec) if args[i].startswith("--") else _short_options(args, i, spec)
        if taken is None:
            return None
        i, options = taken
        found.extend(options)
    return i, found


def _long_option(args: Sequence[str], i: int, spec: Options) -> tuple[int, list[tuple[str, str]]] | None:
    name, eq, value = args[i][2:].partition("=")
    if name in spec.long_flags:
        return i + 1, [(name, value)]
    if name not in spec.long_values or (not eq and i + 1 >= len(args)):
        return None
    return (i + 1, [(name, value)]) if eq else (i + 2, [(name, args[i + 1])])


def _short_options(args: Sequence[str], i: int, spec: Options) -> tuple[int, list[tuple[str, str]]] | None:
    """``-abc``, ``-uroot``, ``-u root``: the letters of one word (the last may take a value)."""
    arg = args[i]
    found: list[tuple[str, str]] = []
    for j, letter in enumerate(arg[1:], start=1):
        if letter in spec.values:
            if arg[j + 1:]:
                return i + 1, [*found, (letter, arg[j + 1:])]
            return (i + 2, [*found, (letter, args[i + 1])]) if i + 1 < len(args) else None
        if letter not in spec.flags:
            return None
        found.append((letter, ""))
    return i + 1, found


def unwrap(argv: tuple[str, ...], environ: Mapping[str, str], cwd: str, stdin: str | None) -> Inner | None:
    """What ``argv`` runs when its program wraps another; None when it is a program of its own."""
    if not is_known(argv[0]):
        return None
    handler = WRAPPERS.get(program_of(argv[0]))
    if handler is None:
        return None
    return handler(argv, dict(environ), cwd, stdin)


def _known_start(args: Sequence[str]) -> int | None:
    """The first word naming a program envlabel follows (for a wrapper option it does not know)."""
    return next((i for i, a in enumerate(args) if is_known(a) and (program_of(a) in READERS or program_of(a) in
                                                                    WRAPPERS)), None)


def _simple(spec: Options, operands: int = 0,
            stop: Callable[[list[tuple[str, str]]], bool] | None = None) -> Handler:
    """A wrapper ``PROG [options] [operands...] CMD ARGS...`` that runs CMD as it is."""
    def handle(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
        args = argv[1:]
        parsed = parse_options(args, spec)
        if parsed is None:
            start = _known_start(args)
            return None if start is None else Inner([tuple(args[start:])], environ, cwd, stdin)
        at, options = parsed
        if stop is not None and stop(options):
            return None  # it runs nothing (``command -v aws``): the program itself
        rest = args[at + operands:]
        return Inner([tuple(rest)] if rest else [], environ, cwd, stdin)
    return handle


_ENV_PAIRS = ("-u", "--unset", "-C", "--chdir", "-S", "--split-string")
_ENV_FLAGS = ("-0", "--null", "-v", "--debug")
_ENV_SIGNALS = ("--default-signal", "--ignore-signal", "--block-signal", "--list-signal")


def _env(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    args, i = list(argv[1:]), 0
    while i < len(args):
        arg = args[i]
        if arg in _ENV_PAIRS and i + 1 < len(args):  # -u NAME: read as -uNAME
            args[i:i + 2] = [f"{arg}={args[i + 1]}" if arg.startswith("--") else arg + args[i + 1]]
            continue
        if arg.startswith(("-S", "--split-string=")):  # -S 'A=1 prog args': its words are the arguments
            args[i:i + 1] = _split_string(arg[2:] if not arg.startswith("--") else arg.partition("=")[2])
            continue
        name, eq, value = arg.partition("=")
        if arg == "--" or not arg.startswith("-"):
            if arg != "--" and eq and _NAME.match(name):
                environ[name] = value
                i += 1
                continue
            i += arg == "--"
            break
        changed = _env_option(arg, environ, cwd)
        if changed is None:
            start = _known_start(args[i:])
            if start is None:
                return None
            i += start
            break
        environ, cwd = changed
        i += 1
    rest = args[i:]
    return Inner([tuple(rest)] if rest else [], environ, cwd, stdin)


def _env_option(arg: str, environ: dict[str, str], cwd: str) -> tuple[dict[str, str], str] | None:
    """The environment and directory after one ``env`` option; None for an option it does not know."""
    value = arg.partition("=")[2] if arg.startswith("--") else arg[2:]
    if arg in ("-i", "-", "--ignore-environment"):
        return {}, cwd
    if arg in _ENV_FLAGS or arg.startswith(_ENV_SIGNALS):
        return environ, cwd
    if arg.startswith(("-u", "--unset=")):
        environ.pop(value, None)
        return environ, cwd
    if arg.startswith(("-C", "--chdir=")):
        return environ, os.path.normpath(os.path.join(cwd, value)) if is_known(value) else unknown(value)
    return None


def _split_string(text: str) -> list[str]:
    try:
        return shlex.split(text) if is_known(text) else [unknown(text)]
    except ValueError:
        return [unknown(text)]


_SUDO = Options(flags="AbEHiKklnPSsVve", values="CDghpRrTtUu",
                long_flags=frozenset({"preserve-env", "login", "shell", "askpass", "background", "non-interactive",
                                      "stdin", "reset-timestamp", "remove-timestamp", "set-home", "preserve-groups",
                                      "edit", "list", "validate", "version", "help", "bell"}),
                long_values=frozenset({"user", "group", "chdir", "prompt", "close-from", "host", "role", "type",
                                       "other-user", "command-timeout", "chroot"}))
_DOAS = Options(flags="nsL", values="uC")


def _sudo(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    program = program_of(argv[0])
    args = argv[1:]
    parsed = parse_options(args, _DOAS if program == "doas" else _SUDO)
    options: list[tuple[str, str]] = []
    if parsed is None:
        start = _known_start(args)
        if start is None:
            return None
        at = start
    else:
        at, options = parsed
    letters = {name for name, _ in options}
    if letters & {"e", "edit", "l", "list", "v", "validate", "V", "version", "K", "remove-timestamp", "h", "help"}:
        return Inner([], environ, cwd, stdin)  # edits a file, lists or validates: runs no command
    keep: set[str] | None = None  # None: whatever sudoers keeps, which the line cannot show
    if "E" in letters or ("preserve-env", "") in options:
        keep = set(environ)
    for name, value in options:
        if name == "preserve-env" and value:
            keep = set(value.split(","))
    kept = {k: (v if keep is not None and k in keep else unknown(f"${k} as {program} passes it"))
            for k, v in environ.items()}
    kept["HOME"] = unknown(f"the home directory {program} runs the command with")
    rest = list(args[at:])
    while rest and "=" in rest[0] and _NAME.match(rest[0].partition("=")[0]):
        name, _, value = rest.pop(0).partition("=")
        kept[name] = value
    where = next((value for name, value in options if name in ("D", "chdir")), None)
    if where is not None:
        cwd = os.path.normpath(os.path.join(cwd, where)) if is_known(where) else unknown(where)
    return Inner([tuple(rest)] if rest else [], kept, cwd, stdin)


def _su(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    args = list(argv[1:])
    preserve = any(a in ("-m", "-p", "--preserve-environment") for a in args)
    kept = {k: (v if preserve else unknown(f"${k} as su passes it")) for k, v in environ.items()}
    kept["HOME"] = unknown("the home directory su runs the command with")
    for i, arg in enumerate(args):
        if arg in ("-c", "--command") and i + 1 < len(args):
            return Inner([], kept, cwd, None, script=args[i + 1], positional=["su"])
        if arg.startswith("--command="):
            return Inner([], kept, cwd, None, script=arg.partition("=")[2], positional=["su"])
    return Inner([], kept, cwd, stdin)  # an interactive shell: what it runs is typed later


_XARGS = Options(flags="0rtpxo", values="aEdILnPs",
                 long_flags=frozenset({"null", "no-run-if-empty", "verbose", "interactive", "exit", "open-tty",
                                       "show-limits", "eof", "max-lines"}),
                 long_values=frozenset({"arg-file", "delimiter", "max-args", "max-procs", "max-chars",
                                        "process-slot-var"}))


def _xargs(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    parsed = _xargs_options(argv[1:])
    if parsed is None:
        return None
    at, options, replace = parsed
    command = list(argv[1 + at:]) or ["echo"]
    from_file = any(name in ("a", "arg-file") for name, _ in options)
    items = None if from_file else _xargs_items(stdin, options, by_line=replace is not None)
    if replace is not None:
        if items is None:
            marker = unknown("{each line xargs reads}")
            return Inner([tuple(a.replace(replace, marker) for a in command)], environ, cwd, None)
        return Inner([tuple(a.replace(replace, item) for a in command) for item in items], environ, cwd, None)
    if items is None:
        return Inner([(*command, unknown("<the arguments xargs reads from its input>"))], environ, cwd, None)
    return Inner([(*command, *items)], environ, cwd, None)


def _xargs_options(args: Sequence[str]) -> tuple[int, list[tuple[str, str]], str | None] | None:
    """Where xargs' command starts, its options, and its replace string (``-I R``, ``-i``, ``--replace``).
    ``-i[R]``, ``-e[EOF]``, ``-l[N]`` and ``--replace[=R]`` take their value only attached."""
    replace: str | None = None
    options: list[tuple[str, str]] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and len(args[i]) > 1 and args[i] != "--":
        arg = args[i]
        if arg.startswith("--replace") or re.fullmatch(r"-i\S*", arg):
            replace = (arg.partition("=")[2] if arg.startswith("--") else arg[2:]) or "{}"
            i += 1
            continue
        if re.fullmatch(r"-[el]\S*", arg):
            i += 1
            continue
        taken = _long_option(args, i, _XARGS) if arg.startswith("--") else _short_options(args, i, _XARGS)
        if taken is None:
            start = _known_start(args[i:])
            return None if start is None else (i + start, options, replace)
        i, found = taken
        options.extend(found)
    i += i < len(args) and args[i] == "--"
    return i, options, next((value for name, value in options if name == "I"), replace)


def _xargs_items(stdin: str | None, options: list[tuple[str, str]], *, by_line: bool) -> list[str] | None:
    """The arguments xargs reads when its input is known (quotes and backslashes read as xargs reads them)."""
    if stdin is None or not is_known(stdin):
        return None
    names = {name for name, _ in options}
    if names & {"0", "null"}:
        return [item for item in stdin.split("\0") if item]
    delimiter = next((value for name, value in options if name in ("d", "delimiter")), None)
    if delimiter is not None:
        return [item for item in stdin.split(delimiter.encode().decode("unicode_escape")) if item]
    if by_line:
        return [line.strip() for line in stdin.splitlines() if line.strip()]
    try:
        return shlex.split(stdin)
    except ValueError:
        return None


def _find(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    runs: list[tuple[str, ...]] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        if args[i] in ("-exec", "-execdir", "-ok", "-okdir"):
            end = next((j for j in range(i + 1, len(args)) if args[j] in (";", "+")), len(args))
            marker = unknown("{each file find finds}")
            runs.append(tuple(a.replace("{}", marker) for a in args[i + 1:end]))
            i = end
        i += 1
    runs = [run for run in runs if run]
    return Inner(runs, environ, cwd, None) if runs else None


def _shell(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    args = argv[1:]
    i, command, reads_stdin = 0, False, False
    while i < len(args):
        arg = args[i]
        if arg in ("--", "-"):
            i += 1
            break
        if arg in ("--rcfile", "--init-file"):
            i += 2
            continue
        if arg.startswith("--"):
            i += 1
            continue
        if arg[:1] in "-+" and len(arg) > 1:
            letters = arg[1:]
            command = command or "c" in letters
            reads_stdin = reads_stdin or "s" in letters
            i += 1 + sum(1 for letter in letters if letter in "oO")  # -o OPTION, -O SHOPT take a word
            continue
        break
    rest = list(args[i:])
    if command:
        if not rest:
            return Inner([], environ, cwd, stdin)
        return Inner([], environ, cwd, None, script=rest[0], positional=rest[1:] or [program_of(argv[0])])
    if rest and not reads_stdin:
        return Inner([], environ, cwd, stdin)  # a script file: not read (as ./script.sh is not)
    if stdin is None:
        return Inner([], environ, cwd, None, script=unknown("the script on its standard input"),
                     positional=[program_of(argv[0]), *rest])
    return Inner([], environ, cwd, None, script=stdin, positional=[program_of(argv[0]), *rest])


_WATCH = Options(flags="dtbegcxpwr", values="nq",
                 long_flags=frozenset({"differences", "no-title", "beep", "errexit", "chgexit", "color", "no-color",
                                       "exec", "precise", "no-wrap", "no-rerun"}),
                 long_values=frozenset({"interval", "equexit"}))


def _watch(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    parsed = parse_options(argv[1:], _WATCH)
    if parsed is None:
        return None
    at, options = parsed
    rest = argv[1 + at:]
    if not rest:
        return Inner([], environ, cwd, stdin)
    if any(name in ("x", "exec") for name, _ in options):
        return Inner([tuple(rest)], environ, cwd, stdin)
    return Inner([], environ, cwd, None, script=" ".join(rest), positional=["watch"])


_SSH = Options(flags="46AaCfGgKkMNnqsTtVvXxYy", values="BbcDEeFIiJLlmOoPpQRSWw")


def _ssh(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    parsed = parse_options(argv[1:], _SSH)
    if parsed is None:
        return None
    at, _ = parsed
    rest = argv[1 + at:]
    if len(rest) < 2:
        return Inner([], environ, cwd, stdin)  # an interactive session: what it runs is typed later
    remote = {"HOME": unknown(f"the home directory on {shown(rest[0])}")}
    return Inner([], remote, unknown(f"a directory on {shown(rest[0])}"), None, script=" ".join(rest[1:]),
                 positional=["sh"])


def _flock(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    args = argv[1:]
    parsed = parse_options(args, Options(flags="sexunoF", values="wEc",
                                         long_flags=frozenset({"shared", "exclusive", "unlock", "nonblock", "close",
                                                               "no-fork", "verbose"}),
                                         long_values=frozenset({"timeout", "conflict-exit-code", "command"})))
    if parsed is None:
        return None
    at, options = parsed
    script = next((value for name, value in options if name in ("c", "command")), None)
    if script is not None:
        return Inner([], environ, cwd, None, script=script, positional=["sh"])
    rest = args[at + 1:]
    if rest[:1] in (("-c",), ("--command",)) and len(rest) > 1:
        return Inner([], environ, cwd, None, script=rest[1], positional=["sh"])
    return Inner([tuple(rest)] if rest else [], environ, cwd, stdin)


def _python(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    args = list(argv[1:])
    if "-m" in args and args.index("-m") + 1 < len(args) and args[args.index("-m") + 1] == "awscli":
        return Inner([("aws", *args[args.index("-m") + 2:])], environ, cwd, stdin)
    return None


_AWS_VAULT = Options(flags="njs", values="dt",
                     long_flags=frozenset({"no-session", "json", "server", "ec2-server", "ecs-server", "lazy",
                                           "stdout", "debug"}),
                     long_values=frozenset({"duration", "mfa-token", "region", "prompt", "backend", "keychain"}))


def _aws_vault(argv: tuple[str, ...], environ: dict[str, str], cwd: str, stdin: str | None) -> Inner | None:
    args = list(argv[1:])
    if "exec" not in args:
        return None
    after = args[args.index("exec") + 1:]
    parsed = parse_options(after, _AWS_VAULT)
    if parsed is None or parsed[0] >= len(after):
        return None
    at, options = parsed
    profile, rest = after[at], after[at + 1:]
    more = parse_options(rest, _AWS_VAULT)  # its flags may follow the profile too
    if more is not None:
        options += more[1]
        rest = rest[more[0]:]
    inner = {k: v for k, v in environ.items() if k not in _AWS_CREDENTIALS}
    inner["AWS_PROFILE"] = inner["AWS_VAULT"] = profile  # its credentials are the profile's
    for name, value in options:
        if name == "region":
            inner["AWS_REGION"] = inner["AWS_DEFAULT_REGION"] = value
    return Inner([tuple(rest)] if rest else [], inner, cwd, stdin)


def _distribution_kubectl(argv: tuple[str, ...], environ: dict[str, str], cwd: str,
                          stdin: str | None) -> Inner | None:
    """``microk8s kubectl ...``, ``k3s kubectl ...``, ``minikube kubectl -- ...``: kubectl."""
    if argv[1:2] != ("kubectl",):
        return None
    rest = list(argv[2:])
    if program_of(argv[0]) == "minikube" and "--" in rest:
        rest = rest[rest.index("--") + 1:]
    return Inner([("kubectl", *rest)], environ, cwd, stdin)


Handler = Callable[[tuple[str, ...], dict[str, str], str, str | None], Inner | None]

WRAPPERS: dict[str, Handler] = {
    "env": _env, "sudo": _sudo, "doas": _sudo, "su": _su, "runuser": _su, "xargs": _xargs, "find": _find,
    "watch": _watch, "ssh": _ssh, "flock": _flock, "aws-vault": _aws_vault,
    "microk8s": _distribution_kubectl, "k3s": _distribution_kubectl, "minikube": _distribution_kubectl,
    "python": _python, "python3": _python,
    **dict.fromkeys(SHELLS, _shell),
    "nohup": _simple(Options()),
    "builtin": _simple(Options()),
    "timeout": _simple(Options(flags="v", values="sk", long_flags=frozenset({"preserve-status", "foreground",
                                                                             "verbose"}),
                               long_values=frozenset({"signal", "kill-after"})), operands=1),
    "nice": _simple(Options(flags="0123456789", values="n", long_values=frozenset({"adjustment"}))),
    "time": _simple(Options(flags="pavq", values="fo", long_flags=frozenset({"portability", "append", "verbose",
                                                                            "quiet"}),
                            long_values=frozenset({"format", "output"}))),
    "command": _simple(Options(flags="pvV"), stop=lambda found: any(n in ("v", "V") for n, _ in found)),
    "exec": _simple(Options(flags="cl", values="a")),
    "stdbuf": _simple(Options(values="ioe", long_values=frozenset({"input", "output", "error"}))),
    "setsid": _simple(Options(flags="cfw", long_flags=frozenset({"ctty", "fork", "wait"}))),
    "ionice": _simple(Options(flags="t", values="cnpPu"),
                      stop=lambda found: any(n in ("p", "P", "u") for n, _ in found)),
    "unbuffer": _simple(Options(flags="p")),
    "chronic": _simple(Options(flags="ev")),
    "caffeinate": _simple(Options(flags="dimsu", values="tw")),
}
