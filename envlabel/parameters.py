"""A call's parameters as JSON whose digest is the same for the same call: what the guards, the AWS CLI reader
and the shell hooks send with a check, so an approval is bound to that very call (and recovery rules can read
``SkipFinalSnapshot`` or ``propagationPolicy``). Pure; imports nothing of envlabel."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import date, datetime
from datetime import time as daytime
from typing import Any

#: keys whose values never travel to the server (the digest does not need them, and the log must not hold them);
#: also botocore's generated ClientToken, which differs on every call and would make each retry a new request
_OMITTED = re.compile(r"password|secret|token|credential|private.?key", re.IGNORECASE)
#: deeper structures are summarized by their type
_MAX_DEPTH = 32


def jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` (a call's parameters) as JSON whose digest is the same for the same call: bytes by their
    length and hash, streams and other objects by their type, times in ISO form, secrets and generated
    idempotency tokens left out (the server sees only the digest, but the parameters travel to it)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping) and depth < _MAX_DEPTH:
        return {str(key): "<omitted>" if _OMITTED.search(str(key)) else jsonable(item, depth + 1)
                for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset) and depth < _MAX_DEPTH:
        items = [jsonable(item, depth + 1) for item in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return f"<{len(data)} bytes sha256:{hashlib.sha256(data).hexdigest()[:16]}>"
    if isinstance(value, datetime | date | daytime):
        return value.isoformat()
    return f"<{type(value).__name__}>"  # a stream, a file: reading it would consume what the call sends
