"""The check of a shell command line as a use case: plan it, then decide every operation through the
:class:`~envlabel.service.core.authority.Authority` (the caller's grant, approvals, mode and the decision log apply
to each operation as to any check; the log records them with interface ``check-command`` unless the caller is a
hook or guard that said what it is).

    check_command(authority, "aws rds delete-db-instance --db-instance-identifier orders-db", context, caller=me)
    # {"decision": "deny", "operations": [CHECK JSON, ...], "unparsed": [...]}

Planning (:func:`envlabel.commands.plan_command`) reads what the command line alone does not say: ``-f``
manifests, AWS profiles (the account behind them), kubeconfig contexts, files a line sources or redirects.
Those live on the machine that runs the command, so the CLI and the hooks plan where the command runs
(:func:`local_context`). The HTTP route plans for a caller on another machine (:func:`remote_context`,
``remote=True``): a path in the command names the caller's file, not the server's, so while it plans the server
opens no file, lists no directory, resolves no name, connects nowhere and starts no process (:func:`sealed`,
enforced with a Python audit hook, whatever the readers do), and what needed them is not understood: decided
fail closed.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from envlabel.commands import CommandContext, Operation, decide_command, plan_command
from envlabel.config import Config
from envlabel.hooks import cluster_maps
from envlabel.records import CheckRecord
from envlabel.service.core.authority import Authority, Caller
from envlabel.service.core.errors import InvalidRequest
from envlabel.service.core.query import Query

#: variables a remote caller may pass: they name a region, a profile or a project, never a file or a secret
REMOTE_ENVIRON = frozenset({"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                            "CLOUDSDK_CORE_PROJECT", "GOOGLE_CLOUD_PROJECT"})
#: the files a planner would read for a remote caller, pointed at nothing
#: (no KUBECONFIG and no HOME: no kubeconfig at all, so a caller's --server alone names the cluster)
_NOWHERE = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "CLOUDSDK_CONFIG": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true"}
SEALED_MESSAGE = ("the envlabel server reads no file for a caller: check this command where it runs "
                  "(envlabel check-command, or the coding-agent hooks)")

def check_command(authority: Authority | Query, command: str | Sequence[str], context: CommandContext, *,
                  caller: Caller | None = None, max_operations: int | None = None,
                  remote: bool = False) -> dict[str, Any]:
    """The decided command: ``{"decision", "operations": [check JSON...], "unparsed": [...]}`` (strictest wins;
    a command that runs no infrastructure tool is allowed without a check), each operation checked for ``caller``
    (default: an anonymous check-command caller; a bare Query: no log). ``remote``: planned for a caller on another
    machine, :func:`sealed`. Raises InvalidRequest when it performs more than ``max_operations`` operations."""
    authority = authority if isinstance(authority, Authority) else Authority(authority)
    who = caller if caller is not None else Caller(interface="check-command")
    if remote:
        with sealed():
            plan = plan_command(command, context)
    else:
        plan = plan_command(command, context)
    if max_operations is not None and len(plan.operations) > max_operations:
        raise InvalidRequest("command", f"it performs {len(plan.operations)} infrastructure operations; at most "
                                        f"{max_operations} are checked per request (api.max_batch): split it")

    def decide(operation: Operation) -> CheckRecord:
        return authority.check(who, operation.target, operation.action, contents=operation.contents,
                               parameters=operation.parameters)

    return decide_command(plan, decide)


def local_context(config: Config | None, environ: Mapping[str, str], cwd: str) -> CommandContext:
    """The context of a command run here: this process's environment and directory, and the config's
    kubernetes sources naming kubeconfig contexts and API servers as clusters."""
    by_context, by_server = cluster_maps(config.sources) if config is not None else ({}, {})
    return CommandContext(environ=dict(environ), cwd=cwd, clusters_by_context=by_context,
                          clusters_by_server=by_server)


def remote_context(config: Config, environ: Mapping[str, str] | None) -> CommandContext:
    """The context of a command a caller on another machine would run: only the variables of
    :data:`REMOTE_ENVIRON` it passed, every file a planner would read pointed at nothing, and an empty working
    directory (plan it :func:`sealed`)."""
    passed = {key: value for key, value in (environ or {}).items() if key in REMOTE_ENVIRON}
    by_context, by_server = cluster_maps(config.sources)  # the server's own config: read here, not sealed
    return CommandContext(environ={**passed, **_NOWHERE}, cwd=_empty_directory(), clusters_by_context=by_context,
                          clusters_by_server=by_server)


_EMPTY: list[str] = []


def _empty_directory() -> str:
    """An empty directory of this process's, a remote caller's working directory."""
    if not _EMPTY:
        _EMPTY.append(tempfile.mkdtemp(prefix="envlabel-caller-"))
    return _EMPTY[0]


# -- sealed planning ------------------------------------------------------------------------------------
_SEALED: ContextVar[bool] = ContextVar("envlabel_sealed_planning", default=False)
_INSTALLED = threading.Lock()
_HOOKED: list[bool] = []
#: audit events refused while sealed: reading files and directories, the network, other processes
_REFUSED = frozenset({"os.listdir", "os.scandir", "os.walk", "glob.glob", "glob.glob/2", "os.chdir",
                      "socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                      "socket.gethostbyaddr", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                      "os.spawn", "os.fork", "os.forkpty", "pty.spawn", "urllib.Request", "http.client.connect"})
#: what may still be opened while sealed: the installed code and its data (imports, botocore's models)
_CODE_SUFFIXES = (".py", ".pyc", ".pyi", ".so", ".json", ".gz", ".zip")


@contextmanager
def sealed() -> Iterator[None]:
    """Within the block, in this thread (and task), opening a file other than the installed code's, listing a
    directory, a name lookup, a connection or a new process fails with PermissionError (:data:`SEALED_MESSAGE`);
    readers answer that as a command they could not read."""
    _install_audit_hook()
    token = _SEALED.set(True)
    try:
        yield
    finally:
        _SEALED.reset(token)


def _install_audit_hook() -> None:
    with _INSTALLED:
        if not _HOOKED:  # an audit hook cannot be removed: one for the process, idle unless sealed
            _CODE_ROOTS.extend(_code_roots())  # before sealing: listing them is what the seal refuses
            sys.addaudithook(_audit)
            _HOOKED.append(True)


def _code_roots() -> list[str]:
    """The directories of the installed code: the interpreter's prefixes and envlabel's own folders (the
    top-level folders its subpackages link to, in a checkout)."""
    import envlabel

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for folder in envlabel.__path__:
        roots.add(folder)
        roots.update(os.path.join(folder, name) for name in os.listdir(folder))
    return sorted({os.path.join(os.path.realpath(root), "") for root in roots if os.path.isdir(root)})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _SEALED.get():
        return
    if event == "open":
        path, mode = args[0], args[1] if len(args) > 1 else "r"
        if isinstance(path, int) or _is_code(path, mode):
            return
    elif event not in _REFUSED:
        return
    raise PermissionError(errno.EACCES, SEALED_MESSAGE)


def _is_code(path: Any, mode: Any) -> bool:
    if not isinstance(mode, str) or any(c in mode for c in "wax+"):
        return False
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return real.endswith(_CODE_SUFFIXES) and real.startswith(tuple(_CODE_ROOTS))


_CODE_ROOTS: list[str] = []
