"""`envlabel demo` as a user runs it: a real subprocess, its in-process moto, a real SQLite file,
and the commands it prints run exactly as printed."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for_http

ENVLABEL = str(Path(sys.executable).parent / "envlabel")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("demo")
    (directory / "keep.txt").write_text("not the demo's")
    (directory / "envlabel.db").write_text("a stale store from an earlier run")  # started fresh
    proc = subprocess.run([ENVLABEL, "demo", "--no-serve", "--dir", str(directory)], capture_output=True,
                          text=True, timeout=240, env=dict(os.environ), check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return directory, proc.stdout


def printed_command(output: str, comment: str) -> list[str]:
    """The command printed on the line after ``# <comment>``."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"# {comment}"):
            return shlex.split(lines[i + 1])
    raise AssertionError(f"no command printed after '# {comment}' in:\n{output}")


def run_printed(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_summary_shows_every_environment(demo_run: tuple[Path, str]) -> None:
    directory, output = demo_run
    counts = re.search(r"^\s+resources (\d+) \((.*)\)$", output, re.MULTILINE)
    assert counts is not None, output
    per_env = {env: int(n) for env, n in re.findall(r"(\w+) (\d+)", counts.group(2))}
    assert per_env.get("production", 0) > 0 and per_env.get("staging", 0) > 0 and per_env.get("sandbox", 0) > 0
    assert "complete" in output and "INCOMPLETE" not in output
    assert (directory / "keep.txt").read_text() == "not the demo's"  # only its own files are replaced


def test_printed_get_tells_the_twins_apart(demo_run: tuple[Path, str]) -> None:
    _directory, output = demo_run
    production = printed_command(output, "the production orders-db")
    staging = printed_command(output, "its staging twin")
    assert production[-2] == staging[-2] == "get"
    prod_arn, staging_arn = production[-1], staging[-1]
    # the same name and shape, told apart only by where they live
    assert prod_arn.endswith(":db:orders-db") and staging_arn.endswith(":db:orders-db") and prod_arn != staging_arn
    answers = {}
    for argv in (production, staging):
        proc = run_printed(argv)
        assert proc.returncode == 0, proc.stderr
        answers[argv[-1]] = proc.stdout.splitlines()[0]
    assert answers[prod_arn] == f"{prod_arn}: production"
    assert answers[staging_arn] == f"{staging_arn}: staging"


def test_printed_list_and_fail_closed_account(demo_run: tuple[Path, str]) -> None:
    _directory, output = demo_run
    listing = run_printed(printed_command(output, "everything production"))
    assert listing.returncode == 0, listing.stderr
    rows = [line.split() for line in listing.stdout.splitlines()[:-1]]
    assert rows and all(row[0] == "production" for row in rows)
    unknown = run_printed(printed_command(output, "an account with no usable signal"))
    assert unknown.returncode == 0, unknown.stderr
    assert unknown.stdout.splitlines()[0].endswith(": unknown")


def test_demo_serves_the_daemon_and_its_api_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    with (tmp_path / "stderr.log").open("w") as errors:
        proc = subprocess.Popen([ENVLABEL, "demo", "--dir", str(tmp_path / "demo"), "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            assert proc.stdout is not None
            printed: list[str] = []
            for line in proc.stdout:  # the demo prints its next steps, then serves
                printed.append(line)
                if line.startswith("The daemon and its API serve on"):
                    break
            label_curl = shlex.split(proc.stdout.readline())
            assert label_curl[:2] == ["curl", "-s"], "".join(printed)
            url = label_curl[2]
            assert url.startswith(f"http://127.0.0.1:{port}/v1/label?target=arn:aws:rds:")
            wait_for_http(url, proc)  # type: ignore[arg-type]
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
            assert (body["environment"], body["found"]) == ("production", True)
            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=90)
            assert proc.returncode == 0, (tmp_path / "stderr.log").read_text()
            assert "demo stopped" in rest
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
