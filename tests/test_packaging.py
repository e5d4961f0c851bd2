"""The package as a user installs it: one import package, extras that match what people install, and static
tools that check every module.

The wheel is built from this checkout and installed into fresh virtualenvs with pip, as a user would:
first alone (the agent-side SDK), then with the daemon extra (no moto). Their dependencies come from the
package index (pip's cache makes a second run quick).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_helm import dockerfile

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("discovery", "labelers", "store", "service")


def product_files() -> list[Path]:
    """Every .py file of the package, reached through envlabel/'s links to the top-level folders."""
    return [Path(top, name) for top, dirs, names in os.walk(ROOT / "envlabel", followlinks=True)
            if "__pycache__" not in top for name in names if name.endswith(".py")]


def product_modules() -> set[str]:
    """Every module of the one import package, as the installed wheel names it (envlabel/X is the folder X)."""
    found = set()
    for path in product_files():
        parts = path.relative_to(ROOT).with_suffix("").parts
        found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_the_rooms_are_the_top_level_folders_seen_as_one_package() -> None:
    for room in ROOMS:
        link = ROOT / "envlabel" / room
        assert link.is_symlink() and link.resolve() == (ROOT / room).resolve(), link
    assert {"envlabel.store.sql", "envlabel.service.core.query", "envlabel.discovery.aws.scanner"} <= product_modules()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
                   check=True, timeout=600)
    (built,) = out.glob("envlabel-*.whl")
    return built


def test_the_wheel_holds_one_import_package_and_every_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"envlabel"}
    modules = {n.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for n in names if n.endswith(".py")}
    assert modules == product_modules()
    # the read-only permissions the docs point at ship with the package
    assert {"envlabel/discovery/aws/iam-policy.json", "envlabel/discovery/gcp-role.yaml",
            "envlabel/discovery/kubernetes-clusterrole.yaml", "envlabel/py.typed"} <= set(names)


class Venv:
    def __init__(self, path: Path) -> None:
        venv.create(path, with_pip=True, symlinks=True)
        self.bin = path / "bin"

    def pip_install(self, *requirements: str) -> None:
        subprocess.run([str(self.bin / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--no-compile", *requirements], check=True, timeout=900)

    def run(self, *argv: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / argv[0]), *argv[1:]]
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, check=False, timeout=120,
                              env={"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(cwd)}, input=input)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Venv, Path]]:
    """A fresh virtualenv with ``pip install envlabel`` (the wheel, no extras), and a directory to run in."""
    env = Venv(tmp_path_factory.mktemp("venv") / "env")
    env.pip_install(str(wheel))
    yield env, tmp_path_factory.mktemp("cwd")


def test_the_sdk_alone_imports_and_the_command_names_the_extra(installed: tuple[Venv, Path]) -> None:
    env, cwd = installed
    done = env.run("python", "-c", "import envlabel.client, envlabel.guard.boto3, envlabel.guard.kubernetes, "
                   "envlabel.guard.awscli, envlabel.hooks, envlabel.commands.kubectl, envlabel.errors, sys; "
                   "print(sorted(m for m in ('click', 'boto3', 'fastapi', 'store', 'service') if m in sys.modules))",
                   cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    for argv in (["--help"], ["check", "--action", "delete", "123456789012"], ["serve"], ["demo"], ["validate"]):
        done = env.run("envlabel", *argv, cwd=cwd)
        assert (done.returncode, done.stdout) == (1, ""), (argv, done)
        assert done.stderr == "envlabel: the envlabel command needs the daemon extra: pip install 'envlabel[daemon]'\n"
    # the coding-agent hook runs on the SDK alone: a command that runs no infrastructure tool is let through
    call = json.dumps({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": "ls -la"}})
    done = env.run("envlabel", "hook", "claude-code", cwd=cwd, input=call)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), done


def test_the_daemon_extra_runs_the_command_without_moto(installed: tuple[Venv, Path], wheel: Path) -> None:
    env, cwd = installed
    env.pip_install(f"envlabel[daemon] @ {wheel.as_uri()}")
    assert env.run("python", "-c", "import moto", cwd=cwd).returncode == 1  # the demo's dependency is not in it
    done = env.run("envlabel", "--help", cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert "validate" in done.stdout and "check" in done.stdout
    done = env.run("envlabel", "validate", cwd=cwd)
    assert done.returncode == 0 and "configuration ok" in done.stdout, done.stderr
    done = env.run("envlabel", "demo", "--no-serve", "--dir", str(cwd / "demo"), cwd=cwd)
    assert (done.returncode, done.stderr) == (1, "envlabel: envlabel demo needs the demo extra: pip install "
                                                 "'envlabel[demo]'\n")
    assert not (cwd / "demo").exists()


def test_extras_match_what_people_install() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert not [d for d in project["dependencies"] if re.match(r"(click|boto3|fastapi|moto)\b", d)]
    assert not [d for d in extras["daemon"] if d.startswith("moto")]
    assert extras["demo"][0] == "envlabel[daemon]" and any(d.startswith("moto") for d in extras["demo"])
    assert project["scripts"] == {"envlabel": "envlabel.service.entry:main"}


def test_the_image_installs_the_daemon_extra_only() -> None:
    """The image's dependencies are requirements.lock (envlabel[daemon], hash-pinned: tests/test_helm.py checks that
    it covers the extra); envlabel itself goes in with --no-deps, so nothing else (the demo's moto) comes along."""
    installs = [args for op, args in dockerfile() if op == "RUN" and re.search(r"\bpip (wheel|install)\b", args)]
    assert installs, "the Dockerfile installs nothing"
    for args in installs:
        from_lock = "--require-hashes" in args and "-r requirements.lock" in args
        assert "--no-deps" in args and (from_lock or re.search(r"--no-deps \.( |$)", args)), args
    lock = (ROOT / "requirements.lock").read_text()
    assert not re.search(r"^(moto|pytest|flask)==", lock, re.M), "the demo's or the tests' packages are in the lock"
    assert "moto" not in (ROOT / "Dockerfile").read_text()


def _product_files() -> set[Path]:
    return {p.resolve() for p in product_files()}


def test_mypy_checks_every_module() -> None:
    """A green mypy that checked two files is a failure: it must have read every module of the package."""
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--verbose"], cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    checked = {(ROOT / m).resolve() for m in re.findall(r"LOG:\s+Parsing (\S+\.py) \(envlabel[\w.]*\)", done.stderr)}
    assert checked == _product_files(), sorted(str(p) for p in _product_files() ^ checked)
    assert "Success: no issues found in" in done.stdout  # (envlabel/data, a folder of data, counts as one more)


def test_ruff_lints_every_module() -> None:
    done = subprocess.run([str(Path(sys.executable).with_name("ruff")), "check", "--show-files", "."], cwd=ROOT,
                          capture_output=True, text=True, check=True, timeout=120)
    linted = {Path(line).resolve() for line in done.stdout.splitlines() if line.endswith(".py")}
    assert _product_files() <= linted, sorted(str(p) for p in _product_files() - linted)


def test_import_linter_sees_every_module() -> None:
    import grimp

    graph = grimp.build_graph("envlabel", cache_dir=None)
    assert graph.modules == product_modules()
