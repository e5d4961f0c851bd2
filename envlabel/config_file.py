"""Where the configuration comes from: the file's bytes, ``ENVLABEL_*`` variables, a bounded YAML subset.

A config is a few KiB written by a person. Anything that makes parsing costly or surprising is refused
with one line that says what to do, before pydantic sees it:

- YAML aliases (``*name``): a handful of them expand into billions of nodes ("billion laughs"); a config
  never needs one, so none is accepted, in the file or in an ``ENVLABEL_*`` value;
- more than :data:`MAX_BYTES` of text, or nesting deeper than :data:`MAX_DEPTH` (the composer recurses, so
  depth is bounded while composing, not after);
- a directory, an unreadable file, a binary file (a NUL byte) or text that is not UTF-8.

:func:`read_config_file` and :func:`parse_yaml` raise :class:`ConfigError` whose only problem is
``(where, message)``; ``where`` is ``(file)`` for the file or the variable's name for an ``ENVLABEL_*`` value.
:func:`env_overrides` reads the variables that name a config key (``ENVLABEL_SCHEDULE__INTERVAL``);
:func:`env_settings` also says which variable set what, for messages that name the variable.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from envlabel.errors import ConfigError

ENV_PREFIX = "ENVLABEL_"
#: ENVLABEL_ variables that are not config keys: the config file's path and the agent-side SDK's settings.
NOT_CONFIG = frozenset({"CONFIG", "URL", "TOKEN", "FAIL_OPEN", "TIMEOUT", "PRINCIPAL"})
#: the largest config document accepted (a real one is a few KiB)
MAX_BYTES = 1_048_576
_MAX_SIZE = "1 MiB"
#: the deepest nesting accepted (the schema itself is at most five levels deep)
MAX_DEPTH = 32
log = logging.getLogger("envlabel.config")
ALIAS_MESSAGE = "YAML aliases (*{name}) are not accepted in envlabel config; write the value out"


class _Refused(Exception):
    """The document uses what the bounded loader refuses; ``line`` is 1-based, 0 if unknown."""

    def __init__(self, message: str, line: int) -> None:
        self.message = message
        self.line = line
        super().__init__(message)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and bounds nesting while it composes (before anything expands)."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _Refused(ALIAS_MESSAGE.format(name=event.anchor), event.start_mark.line + 1)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep; an envlabel config is a few levels "
                               "of mappings and lists", mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def parse_yaml(text: str, where: str = "(file)", path: str | None = None) -> Any:
    """``text`` as YAML without aliases, at most :data:`MAX_BYTES` long and :data:`MAX_DEPTH` deep.

    Raises ConfigError naming ``where``; a value that is not YAML at all raises ``yaml.YAMLError`` so an
    ``ENVLABEL_*`` value may fall back to being read as a plain string.
    """
    if len(text) > MAX_BYTES:
        raise ConfigError([(where, f"it is larger than {_MAX_SIZE}; an envlabel config is a few KiB: "
                            "is this the right value?")], path)
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        at = f" (line {exc.line})" if exc.line and where == "(file)" else ""
        raise ConfigError([(where, f"{exc.message}{at}")], path) from None
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where and what, without PyYAML's multi-line excerpt."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{at}: {problem}"


def read_config_file(path: Path, origin: str) -> Any:
    """The YAML document in ``path`` (named by ``origin``: ``--config`` or ``$ENVLABEL_CONFIG``)."""
    name = str(path)

    def refuse(message: str) -> ConfigError:
        return ConfigError([("(file)", message)], name)

    try:
        with path.open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise refuse(f"it does not exist; check the path {origin} names") from None
    except IsADirectoryError:
        raise refuse(f"it is a directory; {origin} must name the YAML file itself") from None
    except PermissionError:
        raise refuse("it cannot be read (permission denied); give the user running envlabel read access") from None
    except OSError as exc:
        raise refuse(f"it cannot be read ({exc.strerror or exc}); {origin} must name a readable YAML file") from None
    if len(raw) > MAX_BYTES:
        raise refuse(f"it is larger than {_MAX_SIZE}; an envlabel config is a few KiB: is {origin} "
                     "the right file?")
    if b"\0" in raw:
        raise refuse(f"it is a binary file, not YAML text; {origin} must name the envlabel YAML config")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise refuse(f"it is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); save it as UTF-8") from None
    try:
        return parse_yaml(text, "(file)", name)
    except yaml.YAMLError as exc:
        raise refuse(yaml_problem(exc)) from None


#: one ``ENVLABEL_*`` variable that sets config: its name and the value it set (YAML-parsed)
EnvSetting = tuple[str, Any]


def env_overrides(environ: Mapping[str, str], keys: frozenset[str]) -> dict[str, Any]:
    """The config keys (of ``keys``) set by ``ENVLABEL_`` variables; other ``ENVLABEL_`` variables are not config.

    Raises ConfigError naming each variable whose value is refused (an alias, too large or deep, not
    UTF-8) or that sets a key inside a value another variable set to a scalar.
    """
    return env_settings(environ, keys)[0]


def env_settings(environ: Mapping[str, str],
                 keys: frozenset[str]) -> tuple[dict[str, Any], dict[tuple[str, ...], EnvSetting]]:
    """:func:`env_overrides`, and which variable set each path (``("schedule", "interval")``) to what, so a
    problem in a value a variable set names the variable, not the file."""
    overrides: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    setters: dict[tuple[str, ...], EnvSetting] = {}
    for key, raw in sorted(environ.items()):
        name = key[len(ENV_PREFIX):]
        if not key.startswith(ENV_PREFIX) or name in NOT_CONFIG:
            continue
        path = name.lower().split("__")
        if path[0] not in keys:
            _warn_if_misspelt(key, path[0], keys)
            continue
        try:
            value = _env_value(key, raw)
        except ConfigError as exc:
            problems += exc.problems
            continue
        node = overrides
        for depth, part in enumerate(path[:-1], 1):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                setter = setters.get(tuple(path[:depth]), ("another variable", None))[0]
                problems.append((key, f"sets a key inside {'.'.join(path[:depth])}, which {setter} sets to a "
                                 "single value; set one or the other"))
                break
            node = child
        else:
            node[path[-1]] = value
            setters[tuple(path)] = (key, value)
    if problems:
        raise ConfigError(problems)
    return overrides, setters


def _env_value(variable: str, raw: str) -> Any:
    """A variable's value read as YAML (bounded, no aliases); a value that is not YAML is a plain string."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # the OS handed over bytes that are not UTF-8 (kept as surrogates)
        raise ConfigError([(variable, "is not UTF-8 text; set it again as UTF-8")]) from None
    if not raw.strip():
        return raw
    try:
        return parse_yaml(raw, variable)
    except yaml.YAMLError:
        return raw


def _warn_if_misspelt(variable: str, first: str, keys: frozenset[str]) -> None:
    """A variable that is not config may still be a typo of a key (or of an SDK setting): say so."""
    known = {f"{ENV_PREFIX}{k.upper()}": k for k in keys} | {f"{ENV_PREFIX}{n}": n.lower() for n in NOT_CONFIG}
    nearest = difflib.get_close_matches(first, known.values(), n=1, cutoff=0.8)
    if nearest:
        spelled = next(var for var, k in known.items() if k == nearest[0])
        log.warning("%s is not an envlabel setting and is ignored; did you mean %s?", variable, spelled)


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, mappings merged key by key (the environment over the file)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
