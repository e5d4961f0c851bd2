"""The errors the use cases raise, and the one table that says what each becomes on every face.

    EnvlabelError (envlabel.errors)
    ├── TargetError           a target id is not one of the accepted forms
    ├── InvalidRequest        a filter, limit, cursor or time is not acceptable; ``field`` names it
    ├── InvalidOverride       an override request is malformed (environment, reason, author, expiry)
    ├── NoOverride            there is no override on the target to remove
    ├── NoApproval            there is no approval request with that id
    ├── ApprovalRefused       the request cannot be made or decided in its state (not pending, expired, allow, deny)
    │   └── SelfApproval      the requester tried to approve or deny its own request
    ├── ConfigError           the configuration is wrong
    └── StoreError            the store cannot be opened, read or migrated
        └── CorruptStore      its data is damaged (envlabel.store.failures); the store then refuses every call

:func:`outcome_of` gives an error's HTTP status and ``error`` word, the CLI's exit code, and whether an
MCP tool reports it to the agent as a tool error (something the caller can fix) or lets it fail the call.
The CLI, the HTTP API and the MCP server all read :data:`OUTCOMES`; none keeps a mapping of its own.
"""

from __future__ import annotations

from typing import NamedTuple

from envlabel.errors import ConfigError, EnvlabelError, StoreError, TargetError

EXIT_ERROR, EXIT_USAGE = 1, 2


class InvalidRequest(EnvlabelError, ValueError):
    """A filter, limit, cursor or time is not acceptable; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class InvalidOverride(EnvlabelError, ValueError):
    """The override request is malformed (unknown environment, empty reason, expiry in the past)."""


class NoOverride(EnvlabelError, LookupError):
    """There is no override on the target to remove."""


class NoApproval(EnvlabelError, LookupError):
    """There is no approval request with that id."""


class ApprovalRefused(EnvlabelError):
    """An approval request that cannot be created or decided as asked: the check allows already (nothing to
    approve), denies (a deny is never approved), or the request is not pending any more or has expired."""


class SelfApproval(ApprovalRefused):
    """The requester asked to approve or deny its own request: another person must decide it."""


class Outcome(NamedTuple):
    #: HTTP status of the answer
    status: int
    #: the ``error`` word of the HTTP body ``{"error", "message"}``
    error: str
    #: the CLI's exit code
    exit_code: int
    #: True: an MCP tool answers it as a tool error the agent can act on; False: the call fails
    tool_error: bool


#: the most specific class listed for an error decides (its method resolution order is searched)
OUTCOMES: dict[type[EnvlabelError], Outcome] = {
    TargetError: Outcome(400, "malformed target", EXIT_USAGE, True),
    InvalidRequest: Outcome(422, "invalid request", EXIT_USAGE, True),
    InvalidOverride: Outcome(400, "invalid override", EXIT_USAGE, True),
    NoOverride: Outcome(404, "no override", EXIT_ERROR, True),
    NoApproval: Outcome(404, "no approval", EXIT_ERROR, True),
    ApprovalRefused: Outcome(409, "approval refused", EXIT_ERROR, True),
    SelfApproval: Outcome(403, "self approval", EXIT_ERROR, True),
    ConfigError: Outcome(500, "configuration error", EXIT_USAGE, False),  # a config the user must fix
    StoreError: Outcome(503, "store unavailable", EXIT_ERROR, False),
    EnvlabelError: Outcome(500, "internal error", EXIT_ERROR, False),
}


def outcome_of(exc: EnvlabelError) -> Outcome:
    """What ``exc`` becomes on every face.

    >>> outcome_of(TargetError("bad")).status, outcome_of(NoOverride("none")).exit_code
    (400, 1)
    """
    for cls in type(exc).__mro__:
        if cls in OUTCOMES:
            return OUTCOMES[cls]
    return OUTCOMES[EnvlabelError]
