#!/usr/bin/env python3
"""Bootstrap and run envlabel from a checkout with nothing but python3.

    python3 dev.py demo     # the main job: demo estate, embedded SQLite, daemon + API
    python3 dev.py test     # lint, types, layering and the whole test suite
    python3 dev.py bench    # the benchmarks in bench/ (figures, not pass/fail)
    python3 dev.py run ARGS # any envlabel command inside the project's virtualenv

It creates ./.venv, installs the package with its dev extras (again only when
pyproject.toml changed), and starts the services the tests need.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".envlabel-installed"


def ensure_venv() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    print("installing envlabel with its dev extras into .venv (first run takes a minute) ...", flush=True)
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def run(*cmd: str, env: dict[str, str] | None = None) -> int:
    print("+ " + " ".join(cmd), flush=True)
    return run_child(list(cmd), env=env)


def run_child(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` in the checkout and return its exit code; Ctrl-C lets it finish its own way.

    Ctrl-C in a terminal signals the whole foreground process group, the child included: the child shuts
    down (the demo stops its daemon cleanly) and its exit code is ours, 128+N if signal N ended it (130 for
    SIGINT), with no KeyboardInterrupt traceback from this wrapper. A SIGINT the terminal did not send to
    the child too (``kill -INT``, or no terminal at all) is passed on to it."""
    children: list[subprocess.Popen[bytes]] = []

    def on_interrupt(signum: int, _frame: object) -> None:
        for child in children:
            if not reaches_child(child) and child.poll() is None:
                child.send_signal(signum)

    # installed before the child starts, so no SIGINT finds this process without it
    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        children.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
        code = children[0].wait()  # an interrupted wait is resumed after the handler (PEP 475)
    finally:
        signal.signal(signal.SIGINT, previous)
    return 128 - code if code < 0 else code


def reaches_child(child: subprocess.Popen[bytes]) -> bool:
    """Whether the terminal's Ctrl-C reaches ``child`` itself: it runs in the terminal's foreground group."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgid(child.pid)
    except (OSError, ValueError, AttributeError):  # no terminal (or no stdin): only we were signalled
        return False


def test(args: list[str]) -> int:
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    from_services = ROOT / "tests" / "services.py"
    services: subprocess.Popen[bytes] | None = None
    try:
        for step in (["ruff", "check", "."], ["mypy"], ["lint-imports"]):
            if run(str(BIN / step[0]), *step[1:], env=env):
                return 1
        if from_services.exists():  # starts PostgreSQL etc. and exports their URLs
            env_file = ROOT / ".venv" / "services.env"
            env_file.unlink(missing_ok=True)
            services = subprocess.Popen([str(BIN / "python"), str(from_services), "up", str(env_file)], cwd=ROOT)
            if services.wait() != 0:
                print("could not start the test services (see above)", file=sys.stderr)
                return 1
            for line in env_file.read_text().splitlines():
                key, _, value = line.partition("=")
                env[key] = value
        return run(str(BIN / "python"), "-m", "pytest", *args, env=env)
    finally:
        if from_services.exists() and services is not None:
            subprocess.run([str(BIN / "python"), str(from_services), "down"], cwd=ROOT, check=False)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "bench", "run"):
        print(__doc__)
        return 2
    ensure_venv()
    command, rest = argv[0], argv[1:]
    if command == "test":
        return test(rest)
    if command == "bench":
        code = 0
        for script in sorted((ROOT / "bench").glob("*.py")):
            code |= run(str(BIN / "python"), str(script), *rest)
        return code
    if command == "demo":
        return run(str(BIN / "envlabel"), "demo", *rest)
    return run(str(BIN / "envlabel"), *rest)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # Ctrl-C while setting up the virtualenv: no traceback
        sys.exit(130)
