#!/usr/bin/env python3
"""Start and stop the servers the test suite needs (PostgreSQL), and install the browser it drives, outside pytest.

    python tests/services.py up ENV_FILE   # start them; write ENVLABEL_TEST_POSTGRES_URL=... into ENV_FILE
    python tests/services.py down          # stop what `up` started (by PID) and remove its data

``dev.py test`` (and so ``.ci/run``) calls both around pytest. PostgreSQL runs from a throwaway data
directory under /tmp, on a free loopback port, trust authentication for loopback only, ``fsync=off``
(a test database is disposable; durability would only slow the suite), with one database
``envlabel_test`` created with the C collation (ids sort as bytes, as in SQLite).

When the machine has no PostgreSQL, ``up`` installs Debian's package if it runs as root with apt-get
(CI runs on a fresh machine as root); otherwise it says what to install. Without PostgreSQL the
``postgres`` tests skip, except under ``CI=true``, where they fail: CI must really test PostgreSQL.
If ``ENVLABEL_TEST_POSTGRES_URL`` is already set (a server of your own), ``up`` passes it through.

The approval page's tests drive Debian's ``chromium`` (:data:`CHROMIUM`) through Playwright, never a browser
``playwright install`` downloads: ``up`` installs the package the same way when it is missing. Without it those
tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# one state file per calling process (dev.py runs `up` and `down`), so concurrent test runs on one machine
# never stop each other's servers
STATE_DIR = Path(tempfile.gettempdir())
STATE = STATE_DIR / f"envlabel-test-services-{os.getppid()}.json"
DATABASE = "envlabel_test"
URL_VARIABLE = "ENVLABEL_TEST_POSTGRES_URL"
#: the browser tests/test_approval_page.py drives (Debian's package ``chromium``)
CHROMIUM = Path("/usr/bin/chromium")


def say(message: str) -> None:
    print(f"tests/services.py: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_bin() -> Path | None:
    """The directory holding initdb and pg_ctl (Debian keeps them off PATH, under /usr/lib/postgresql)."""
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name)
        if found and Path(found).resolve().with_name("initdb").exists():
            return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def install() -> Path | None:
    """Debian's postgresql package, when we are root and have apt-get; None otherwise."""
    if not can_apt_get():
        say("PostgreSQL is not installed and cannot be installed here (needs root and apt-get); "
            "install it (apt-get install postgresql, or brew install postgresql) or set "
            f"{URL_VARIABLE}=postgresql://USER@HOST:PORT/DB to a server of your own")
        return None
    say("PostgreSQL is not installed: apt-get install postgresql (once per machine) ...")
    return find_bin() if apt_get_install("postgresql") else None


def ensure_chromium() -> bool:
    """Debian's chromium for the approval page's browser tests: installed when missing, if we are root with
    apt-get. False (and the tests skip, or fail under CI=true) when it is not there."""
    if CHROMIUM.exists():
        return True
    if not can_apt_get():
        say(f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get); install it "
            "(apt-get install chromium) or the browser tests will be skipped")
        return False
    say("chromium is not installed: apt-get install chromium (once per machine) ...")
    return apt_get_install("chromium") and CHROMIUM.exists()


def can_apt_get() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_get_install(package: str) -> bool:
    """``apt-get update && apt-get install PACKAGE``, non-interactively; False (said why) when it failed."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
        if subprocess.run(command, env=env, check=False).returncode != 0:
            say(f"{' '.join(command)} failed (see above)")
            return False
    return True


def as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--", *command] if runuser else ["su", "postgres", "-c",
                                                                       " ".join(command)]


def create_database(port: int) -> None:
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{DATABASE}" TEMPLATE template0 ENCODING \'UTF8\' LOCALE \'C\'')


def start(bin_dir: Path, *, durable: bool = False, state: Path | None = None) -> str:
    """Start a server in a new data directory; returns its URL. ``durable`` keeps fsync and synchronous
    commits on (bench/store_backends.py, so PostgreSQL is measured as it runs in production)."""
    state = state or STATE
    data = Path(tempfile.mkdtemp(prefix="envlabel-test-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    log = data / "server.log"
    subprocess.run(as_postgres([str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "postgres", "-A", "trust",
                                "-E", "UTF8", "--locale=C", "--no-sync"]),
                   check=True, stdout=subprocess.DEVNULL)
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    state.write_text(json.dumps({"data": str(data)}))  # before the server starts: `down` cleans up either way
    subprocess.run(as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-o", options, "-l", str(log),
                                "-w", "-t", "60", "start"]), check=True, stdout=subprocess.DEVNULL)
    pid = int((data / "db" / "postmaster.pid").read_text().splitlines()[0])
    state.write_text(json.dumps({"data": str(data), "pid": pid}))
    create_database(port)
    return f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"


def up(env_file: Path) -> int:
    in_ci = os.environ.get("CI", "").lower() == "true"
    if not ensure_chromium():
        say("the browser tests will " + ("FAIL (CI=true)" if in_ci else "be skipped"))
    url = os.environ.get(URL_VARIABLE)
    if not url:
        clean_orphans()
        bin_dir = find_bin() or install()
        if bin_dir is None:
            say("the PostgreSQL tests will " + ("FAIL (CI=true)" if in_ci else "be skipped"))
            return 1 if in_ci else 0
        try:
            url = start(bin_dir)
        except (subprocess.CalledProcessError, OSError) as exc:
            say(f"could not start PostgreSQL: {exc}")
            down()
            return 1
        say(f"PostgreSQL {bin_dir.parent.name} on {url}")
    with env_file.open("a") as out:
        out.write(f"{URL_VARIABLE}={url}\n")
    return 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_orphans() -> None:
    """Stop servers whose test run died before calling `down` (its process is gone)."""
    for path in STATE_DIR.glob("envlabel-test-services-*.json"):
        owner = path.stem.rsplit("-", 1)[-1]
        if owner.isdigit() and not alive(int(owner)):
            down(path)


def down(state_file: Path = STATE) -> int:
    if not state_file.exists():
        return 0
    state = json.loads(state_file.read_text())
    pid = state.get("pid")
    if pid:
        try:
            os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown: disconnect clients, exit
        except ProcessLookupError:
            pid = None
    deadline = time.monotonic() + 30
    while pid and time.monotonic() < deadline:
        if not alive(pid):
            break
        time.sleep(0.1)
    else:
        if pid:
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(state["data"], ignore_errors=True)
    state_file.unlink(missing_ok=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["up"] and len(argv) == 2:
        return up(Path(argv[1]))
    if argv == ["down"]:
        return down()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
