"""Shared fixtures: real services on loopback, started here and stopped by PID."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Never let a test reach a real cloud account.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
})
for _key in [k for k in os.environ if k.startswith("ENVLABEL_") and k != "ENVLABEL_TEST_POSTGRES_URL"]:
    del os.environ[_key]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(url: str, process: subprocess.Popen[bytes], deadline_s: float = 30.0) -> None:
    """Poll until ``url`` answers (readiness, not timing: no fixed sleeps)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {deadline_s}s")


def moto_environment() -> dict[str, str]:
    """moto without its catalogue of Amazon's public AMIs: moto files their 1,300 snapshots under the caller's own
    account, so `DescribeSnapshots OwnerIds=self` (the recovery facts) would list them, and take seconds, where real
    AWS lists only the account's own."""
    return {**os.environ, "MOTO_AMIS_PATH": str(Path(__file__).with_name("moto-no-amis.json"))}


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A real moto server over HTTP for the whole session."""
    port = free_port()
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    process = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], env=moto_environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/moto-api/data.json", process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def moto(moto_url: str) -> str:
    """The moto server, reset to empty for this test."""
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    return moto_url


@pytest.fixture
def gcp_crm() -> Any:
    """The fake Cloud Resource Manager's example estate, two items a page so every listing pages."""
    from envlabel.service.demo.fakes.gcp_crm import FakeCrm, seed_example

    return seed_example(FakeCrm(max_page_size=2))


@pytest.fixture
def gcp_url(gcp_crm: Any) -> Iterator[str]:
    """The fake Cloud Resource Manager serving ``gcp_crm`` on a loopback port for this test."""
    from envlabel.service.demo.fakes.gcp_crm import start_fake_gcp

    url, server = start_fake_gcp(gcp_crm)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def trickler() -> Iterator[str]:
    """An HTTP server on loopback that answers every request one header byte every 0.2 s, forever: a per-read
    timeout never fires, only an overall deadline ends the call (the guards' and the client's tests)."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not stop.wait(0.2):  # the attacker's pace, not a timing assertion
                    conn.sendall(b"a")
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
