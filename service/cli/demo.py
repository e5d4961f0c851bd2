"""``envlabel demo``: the main job on the bundled demo estate (:mod:`envlabel.service.demo`) and an embedded
SQLite store.

It starts local fakes (:data:`envlabel.service.demo.estate.PARTS`: an in-process moto server holding a
demo AWS Organization, a fake Kubernetes API server for its EKS cluster, a fake GCP Resource
Manager), writes a config that points at them, scans every source through the same pipeline as
``envlabel scan``, prints what it found and commands to try that work exactly as printed (CLI,
curl, the Python SDK, MCP over HTTP and stdio), then serves the daemon and its API on loopback
until Ctrl-C (``--no-serve`` stops after the scan).

The demo directory is started fresh each run, but only the files the demo owns are
removed, so ``--dir`` can never wipe anything else.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shlex
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import yaml

from envlabel.config import Config, load_config
from envlabel.errors import EnvlabelError
from envlabel.service.cli.agents import CHECK_EXIT
from envlabel.service.cli.kit import fail
from envlabel.service.cli.labels import format_summary
from envlabel.service.demo.estate import DEMO_AWS_ENV, KUBECONFIG_NAME, PARTS, CheckExample, DemoContext, DemoPart
from envlabel.store.sql import Store

DEMO_EXTRA = "'envlabel[demo]'"
CONFIG_NAME = "envlabel.yaml"
STORE_NAME = "envlabel.db"
#: the files a demo run writes; a fresh run removes these and nothing else.
OWNED = (CONFIG_NAME, KUBECONFIG_NAME, STORE_NAME, f"{STORE_NAME}-wal", f"{STORE_NAME}-shm", f"{STORE_NAME}-journal")


def default_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "envlabel" / "demo"


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo's config and SQLite store go (default ~/.local/share/envlabel/demo).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port the API listens on.")
@click.option("--no-serve", is_flag=True, help="Stop after the scan instead of serving the API.")
def demo(directory: Path | None, host: str, port: int, no_serve: bool) -> None:
    """The main job on a bundled demo estate: fake cloud, scan, labels, then the API on loopback."""
    if importlib.util.find_spec("moto") is None:  # the AWS part runs in moto, which only the demo extra installs
        fail(f"envlabel demo needs the demo extra: pip install {DEMO_EXTRA}")
    # The port before anything else: a port in use is one line, not a traceback after building and scanning
    # the estate; the daemon then serves this very socket, so nothing takes the port meanwhile.
    listener = None if no_serve else reserve_port(host, port)
    try:
        if listener is not None:
            port = listener.getsockname()[1]  # --port 0: the printed commands name the port picked
        directory = (directory or default_dir()).expanduser().resolve()
        prepare_directory(directory)
        run_demo(directory, host, port, listener)
    finally:
        if listener is not None:
            listener.close()


def reserve_port(host: str, port: int) -> socket.socket:
    """The API's socket, bound now; exit 1 saying what to do when it cannot be."""
    from envlabel.service.daemon.ports import bind_listener

    try:
        return bind_listener(host, port)
    except EnvlabelError as exc:
        fail(str(exc))


def run_demo(directory: Path, host: str, port: int, listener: socket.socket | None) -> None:
    """Start the fakes, scan them, print the commands to try, then serve on ``listener`` (None: stop there)."""
    # Fakes log every request they answer; the demo's output is the labels, not their traffic.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    click.echo("starting the demo estate (local fakes, no cloud account is touched) ...")
    with started_parts(directory) as parts:
        config_file = write_config(directory, parts)
        config = load_config(config_file)
        from envlabel.store import open_store

        store = open_store(config.store, pool_size=config.store_pool_size)
        try:
            if not scan_all(config, store):
                fail("a demo source failed to scan (see above); this is a bug in the demo, please report it")
            click.echo("")
            click.echo(next_steps(config_file, parts, host, port, listener is None))
            if listener is not None:
                serve(config, store, host, port, listener)
        finally:
            store.close()


def prepare_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name in OWNED:
            (directory / name).unlink(missing_ok=True)
    except OSError as exc:
        fail(f"cannot prepare the demo directory {directory}: {exc}; pass --dir A/WRITABLE/DIR")


@contextlib.contextmanager
def started_parts(directory: Path) -> Iterator[list[DemoPart]]:
    """Start every provider's fake; stop them all on the way out, whatever happens."""
    parts: list[DemoPart] = []
    try:
        for start in PARTS:
            anchors = {role: value for part in parts for role, value in part.anchors.items()}
            parts.append(start(DemoContext(directory, anchors)))
        yield parts
    finally:
        for part in reversed(parts):
            with contextlib.suppress(Exception):  # stopping a fake must not hide the real error
                part.stop()


def write_config(directory: Path, parts: list[DemoPart]) -> Path:
    config = {"store": f"sqlite:///{directory / STORE_NAME}",
              "sources": [source for part in parts for source in part.sources]}
    path = directory / CONFIG_NAME
    path.write_text("# Written by `envlabel demo`; the endpoints live only while the demo runs.\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path


def scan_all(config: Config, store: Store) -> bool:
    from envlabel.service.core.pipeline import run_source

    ok = True
    for source in config.sources:
        click.echo(f"scanning {source.name} ({source.type}) ...")
        summary = run_source(config, store, source)
        click.echo(format_summary(summary))
        ok = ok and summary.complete
    return ok


def envlabel_command() -> str:
    """How to call envlabel from a shell: its name if that is what PATH finds, else its full path."""
    running = Path(sys.argv[0]).resolve()
    on_path = shutil.which("envlabel")
    if on_path and Path(on_path).resolve() == running:
        return "envlabel"
    if running.name == "envlabel" and running.exists():
        return shlex.quote(str(running))
    return f"{shlex.quote(sys.executable)} -m envlabel.service.cli"


def available_commands() -> set[str]:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().command if ctx else None
    return set(root.commands) if isinstance(root, click.Group) else set()


def next_steps(config_file: Path, parts: list[DemoPart], host: str, port: int, no_serve: bool) -> str:
    """Commands that work exactly as printed: the CLI ones read the demo store (so they need no fake
    running); the curl, SDK and MCP-over-HTTP ones ask the daemon the demo serves."""
    envlabel = envlabel_command()
    base = f"{envlabel} --config {shlex.quote(str(config_file))}"
    commands = available_commands()
    checks = [c for p in parts for c in p.checks]
    lines = ["Try these (they read the demo store; paste them as they are):"]
    for h in (h for p in parts for h in p.highlights):
        lines += [f"  # {h.what}: {h.expected}", f"  {base} get {shlex.quote(h.target)}"]
    if "check" in commands:
        for c in checks:
            lines += [f"  # {c.what} {c.decision} (exit {CHECK_EXIT[c.decision]})",
                      f"  {base} check --action {shlex.quote(c.action)} {shlex.quote(c.target)}"]
    lines += ["  # everything production", f"  {base} list --environment production"]
    if not no_serve:  # the fakes live in the demo's process, and take any credentials but real ones
        creds = " ".join(f"{k}={v}" for k, v in DEMO_AWS_ENV.items() if k.endswith(("_KEY_ID", "_ACCESS_KEY")))
        lines += ["  # scan the demo estate again (while the demo runs)", f"  {creds} {base} scan"]
    if "audit" in commands:
        lines += ["  # conflicts, unlabeled and messy tags, with the fix for each", f"  {base} audit"]
    if "history" in commands and checks:
        lines += [f"  {base} history {shlex.quote(checks[0].target)}"]
    if "mcp" in commands:
        lines += ["", "For a desktop agent, envlabel as an MCP server over stdio (add this to its MCP config):",
                  f"  {json.dumps(mcp_stdio_config(envlabel, config_file))}"]
    if not no_serve and checks:
        lines += ["", *served_examples(f"http://{host}:{port}", checks[0])]
    return "\n".join(lines)


def mcp_stdio_config(envlabel: str, config_file: Path) -> dict[str, object]:
    """The ``mcpServers`` entry that runs ``envlabel --config F mcp`` (the form Claude Desktop and others read)."""
    command, *args = shlex.split(envlabel)
    return {"mcpServers": {"envlabel": {"command": command, "args": [*args, "--config", str(config_file), "mcp"]}}}


def served_examples(url: str, check: CheckExample) -> list[str]:
    """curl, the SDK and MCP over streamable HTTP, each asking the served daemon about ``check``."""
    python = shlex.quote(sys.executable)  # the interpreter that has envlabel (and mcp) installed
    body = json.dumps({"target": check.target, "action": check.action})
    sdk = (f"from envlabel.client import Client; print(Client({url!r}).check({check.target!r}, "
           f"{check.action!r})['decision'])")
    return [
        f"The daemon and its API serve on {url} until Ctrl-C:",
        f"  curl -s '{url}/v1/label?target={check.target}'",
        f"  curl -s -X POST {url}/v1/check -H 'content-type: application/json' -d {shlex.quote(body)}",
        f"  # the Python SDK ({check.decision})",
        f"  {python} -c {shell_quote(sdk)}",
        f"MCP over streamable HTTP at {url}/mcp, as an agent asks before it acts ({check.decision}):",
        f"{python} - <<'EOF'",
        "import asyncio",
        "from mcp import Client",
        "",
        "async def main() -> None:",
        f"    async with Client({url + '/mcp'!r}) as client:",
        f"        result = await client.call_tool('check_action', {{'target': {check.target!r}, "
        f"'action': {check.action!r}}})",
        "        print(result.structured_content['decision'])",
        "",
        "asyncio.run(main())",
        "EOF",
    ]


def shell_quote(code: str) -> str:
    """Python code as one shell word: in double quotes when nothing in it is special there (so the
    single-quoted Python strings inside stay readable), else as :func:`shlex.quote` has it."""
    return f'"{code}"' if not any(c in code for c in '"$`\\!') else shlex.quote(code)


def serve(config: Config, store: Store, host: str, port: int, listener: socket.socket) -> None:
    """The daemon and its API on ``listener`` (bound to host:port), exactly as ``envlabel serve`` runs them,
    until Ctrl-C.

    The fakes stay up meanwhile, so the daemon's scheduled re-scans reach them too."""
    from envlabel.service.daemon.scheduler import run_daemon

    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_daemon(config, store, host, port, listener=listener)
    except EnvlabelError as exc:  # e.g. a --host beyond loopback, which needs tokens the demo has not
        fail(str(exc))
    click.echo("demo stopped")


ALL = [demo]
