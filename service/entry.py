"""The ``envlabel`` console script: the CLI when the daemon extra is installed, one line saying so otherwise.

``pip install envlabel`` is the agent-side SDK alone; the command needs ``envlabel[daemon]``. Nothing is
checked up front (an agent runs ``envlabel check`` before every action): a missing module of the daemon
extra, at start-up or in a command's lazy import, becomes the one line and exit 1.

``envlabel hook AGENT ...`` (a coding agent's pre-tool hook, spawned for every shell command the agent runs)
goes straight to :mod:`envlabel.hooks`, without click, pydantic or the CLI: a command that touches no
infrastructure is answered in the interpreter's start-up time plus the planner's (bench/commands.py). It needs
only the agent-side SDK (``pip install envlabel``).
"""

from __future__ import annotations

import sys

#: the import names of the daemon extra's packages (pyproject.toml ``[project.optional-dependencies] daemon``)
DAEMON_MODULES = frozenset({"click", "boto3", "botocore", "kubernetes", "google", "fastapi", "starlette",
                            "uvicorn", "httptools", "uvloop", "orjson", "mcp", "psycopg", "psycopg_pool",
                            "apscheduler", "prometheus_client"})
MISSING_DAEMON = "envlabel: the envlabel command needs the daemon extra: pip install 'envlabel[daemon]'"


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) >= 2 and argv[0] == "hook" and argv[1] not in ("install", "--help", "-h"):
        from envlabel.hooks import main as hook

        sys.exit(hook(argv[1:]))
    try:
        from envlabel.service.cli import main as cli

        cli()
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in DAEMON_MODULES:
            raise
        print(MISSING_DAEMON, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
