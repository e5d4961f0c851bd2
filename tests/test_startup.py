"""Clear startup failures: a port in use is one line naming its holder before any work, and Ctrl-C on
``dev.py`` leaves with the child's own exit code and no traceback.

Real sockets and real processes: a listening socket holds a port, then ``envlabel serve`` and ``envlabel
demo`` run as subprocesses; ``dev.py``'s wait is driven by real SIGINTs to real children.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from envlabel.config import config_from_dict
from envlabel.errors import EnvlabelError
from envlabel.service.daemon.ports import bind_listener, holding_pids
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store

ROOT = Path(__file__).resolve().parent.parent
ENVLABEL = str(Path(sys.executable).parent / "envlabel")


@pytest.fixture
def occupied() -> Iterator[int]:
    """A port held by a listening socket of this test process."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_bind_listener_names_the_process_holding_the_port(occupied: int) -> None:
    assert holding_pids(occupied) == [os.getpid()]
    with pytest.raises(EnvlabelError) as refused:
        bind_listener("127.0.0.1", occupied)
    message = str(refused.value)
    assert f"port {occupied} is in use (by PID {os.getpid()} (" in message
    assert message.endswith("choose another with --port")


def test_bind_listener_says_which_option_fixes_other_failures() -> None:
    with pytest.raises(EnvlabelError, match="not an address of this machine; choose another with --host"):
        bind_listener("192.0.2.1", 0)  # TEST-NET-1: never local
    with pytest.raises(EnvlabelError, match=r"does not resolve .*choose another with --host"):
        bind_listener("no-such-host.invalid", 0)


def test_background_server_serves_the_socket_bound_first(tmp_path: Path) -> None:
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"})
    store = open_store(config.store)
    listener = bind_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    with BackgroundServer(config, store, port=port, listener=listener) as server:
        assert server.port == port
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        with pytest.raises(EnvlabelError, match=f"port {port} is in use"):
            BackgroundServer(config, store, port=port)  # refused while it is built: no thread, no wait
    with socket.socket() as again:  # closed on stop: the port is free again
        again.bind(("127.0.0.1", port))


def test_background_server_says_at_once_why_its_thread_died(tmp_path: Path) -> None:
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"})
    server = BackgroundServer(config, open_store(config.store))

    def broken(sockets: object = None) -> None:
        raise OSError("the event loop could not start")

    server.server.run = broken  # type: ignore[method-assign]
    with pytest.raises(EnvlabelError, match="stopped before it started: OSError: the event loop could not start"):
        server.start(timeout_s=600)  # the thread's end is reported at once, not after the timeout


def run_envlabel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVLABEL_")}
    # a generous bound against a hang, not a timing assertion: the refusal comes before any work
    return subprocess.run([ENVLABEL, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
                          env=env)


def test_serve_on_a_busy_port_exits_1_naming_the_holder(occupied: int, tmp_path: Path) -> None:
    config = tmp_path / "envlabel.yaml"
    config.write_text(yaml.safe_dump({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"}))
    proc = run_envlabel("serve", "--port", str(occupied), "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"port {occupied} is in use (by PID {os.getpid()}" in proc.stderr
    assert "choose another with --port" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "envlabel.db").exists()  # the store was never opened


def test_demo_on_a_busy_port_exits_1_before_building_the_estate(occupied: int, tmp_path: Path) -> None:
    proc = run_envlabel("demo", "--port", str(occupied), "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"port {occupied} is in use (by PID {os.getpid()}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""  # no estate started, nothing scanned, no commands printed
    assert not (tmp_path / "demo").exists()


# -- dev.py: Ctrl-C waits for the child and exits with its code -------------------------------------------------
CHILD = textwrap.dedent("""
    import signal, sys
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # taken below, however many arrive
    print("ready", flush=True)
    signal.sigwait({signal.SIGINT})
    print("child shutting down cleanly", flush=True)
    sys.exit(int(sys.argv[1]))
""")
DEFAULT_CHILD = textwrap.dedent("""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # SIGINT ends it, as it would a program that does not catch it
    print("ready", flush=True)
    while True:
        signal.pause()
""")
WRAPPER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import dev
    sys.exit(dev.run_child([sys.executable, "-c", *sys.argv[1:]]))
""")


def start_wrapped(child: str, *args: str) -> subprocess.Popen[str]:
    """dev.py's wait around ``child``, in a process group of their own (as a terminal's foreground job)."""
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER.format(root=str(ROOT)), child, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"  # the child is up and waiting for its signal
    return proc


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_ctrl_c_to_the_job_exits_with_the_childs_own_code_and_no_traceback() -> None:
    proc = start_wrapped(CHILD, "3")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group, child included
    code, out, err = finish(proc)
    assert code == 3 and "child shutting down cleanly" in out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_a_sigint_to_dev_py_alone_reaches_the_child_and_a_signal_death_is_130() -> None:
    proc = start_wrapped(DEFAULT_CHILD)
    os.kill(proc.pid, signal.SIGINT)  # the child did not get it: dev.py passes it on
    code, _, err = finish(proc)
    assert code == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
