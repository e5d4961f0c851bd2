"""The requests a curl, wget or HTTPie (``http``, ``https``, ``xh``, ``xhs``) command line sends: method and
address, read with each program's own option rules (:mod:`envlabel.commands.http` decides them).

curl: ``-X``/``--request``; ``-d``/``--data*``/``--json``/``-F`` POST (``-G``: GET); ``-T`` PUT; ``-I`` HEAD; URLs
as words or ``--url``; ``--next`` starts another request; ``--resolve``/``--connect-to`` connect a name elsewhere;
``--request-target`` replaces the path; ``{a,b}``/``[1-3]`` globs expand unless ``-g``. An option curl would read
from a file (``-K``) cannot be read. An unknown option is taken as a switch, so no address hides as its value.
wget: ``--method``, ``--post-data``/``--post-file`` POST; ``-i`` (addresses from a file) and ``-e`` setting the
method cannot be read when they may change something. HTTPie: ``[METHOD] URL [ITEM...]``, POST when an item is
data (``a=b``, ``a:=1``, ``a@file``); ``:PORT/path`` is localhost; ``--offline`` sends nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from envlabel.commands.options import CannotRead


@dataclass(slots=True)
class Request:
    method: str
    url: str
    #: other host:port addresses the connection really goes to (curl --resolve / --connect-to)
    connects_to: list[str] = field(default_factory=list)
    #: the address contains glob patterns the program expands
    globbed: bool = False
    #: the path sent instead of the URL's (curl --request-target)
    request_target: str | None = None
    #: a signed AWS request (curl --aws-sigv4)
    aws_signed: bool = False
    #: how it was read, when that is not obvious
    note: str = ""


_CURL_SHORT_VALUES = frozenset("AbcCdDeEFHKmoPQrtTuUwxXyYz")
_CURL_VALUES = frozenset({
    "data", "data-ascii", "data-binary", "data-raw", "data-urlencode", "json", "form", "form-string", "header",
    "proxy-header", "request", "url", "user", "output", "upload-file", "config", "cookie", "cookie-jar", "user-agent",
    "referer", "cert", "key", "cacert", "capath", "cert-type", "key-type", "pass", "max-time", "connect-timeout",
    "retry", "retry-delay", "retry-max-time", "write-out", "proxy", "proxy-user", "noproxy", "resolve", "connect-to",
    "range", "continue-at", "dump-header", "interface", "unix-socket", "abstract-unix-socket", "oauth2-bearer",
    "aws-sigv4", "variable", "expand-url", "expand-data", "expand-header", "expand-output", "request-target",
    "limit-rate", "max-filesize", "max-redirs", "output-dir", "create-file-mode", "ciphers", "proto", "proto-redir",
    "proto-default", "local-port", "dns-servers", "dns-interface", "dns-ipv4-addr", "dns-ipv6-addr",
    "happy-eyeballs-timeout-ms", "keepalive-time", "login-options", "mail-from", "mail-rcpt", "mail-auth",
    "sasl-authzid", "service-name", "socks4", "socks4a", "socks5", "socks5-hostname", "socks5-gssapi-service",
    "preproxy", "proxy-cacert", "proxy-capath", "proxy-cert", "proxy-cert-type", "proxy-key", "proxy-key-type",
    "proxy-pass", "proxy-ciphers", "proxy-pinnedpubkey", "proxy-service-name", "proxy-tls13-ciphers",
    "haproxy-clientip", "hsts", "alt-svc", "etag-compare", "etag-save", "trace", "trace-ascii", "trace-config",
    "stderr", "url-query", "telnet-option", "time-cond", "speed-limit", "speed-time", "ftp-port", "ftp-account",
    "ftp-alternative-to-user", "ftp-method", "ftp-ssl-ccc-mode", "krb", "delegation", "pinnedpubkey", "engine",
    "egd-file", "random-file", "netrc-file", "quote", "ip-tos", "vlan-priority", "ech", "curves", "tls13-ciphers",
    "tls-max", "tlsauthtype", "tlsuser", "tlspassword", "crlfile", "doh-url", "tftp-blksize", "parallel-max",
    "rate", "retry-all-errors", "sigalgs", "upload-flags", "json-data",
})
_CURL_DATA = frozenset({"data", "data-ascii", "data-binary", "data-raw", "data-urlencode", "json", "form",
                        "form-string"})
_CURL_SHORT_NAMES = {"X": "request", "d": "data", "F": "form", "T": "upload-file", "K": "config", "H": "header"}
_WGET_SHORT_VALUES = frozenset("OoaeiBtTwQPUlARDIX")
_WGET_VALUES = frozenset({
    "method", "post-data", "post-file", "body-data", "body-file", "header", "user", "password", "http-user",
    "http-password", "output-document", "output-file", "append-output", "directory-prefix", "tries", "timeout",
    "wait", "user-agent", "referer", "ca-certificate", "ca-directory", "certificate", "private-key", "bind-address",
    "limit-rate", "quota", "level", "accept", "reject", "domains", "exclude-domains", "include-directories",
    "exclude-directories", "load-cookies", "save-cookies", "proxy-user", "proxy-password", "input-file", "execute",
    "base", "config", "dns-timeout", "connect-timeout", "read-timeout", "waitretry", "certificate-type",
    "private-key-type", "secure-protocol", "default-page", "restrict-file-names", "cut-dirs", "local-encoding",
    "remote-encoding", "report-speed", "progress", "use-askpass", "accept-regex", "reject-regex", "regex-type",
    "follow-tags", "ignore-tags", "max-redirect",
})
_HTTPIE_SHORT_VALUES = frozenset("aAopsP")
_HTTPIE_VALUES = frozenset({
    "auth", "auth-type", "output", "session", "session-read-only", "verify", "cert", "cert-key", "cert-key-pass",
    "ssl", "ciphers", "proxy", "timeout", "print", "pretty", "style", "format-options", "response-charset",
    "response-mime", "max-redirects", "max-headers", "default-scheme", "boundary", "raw", "unix-socket",
    "history-print", "bearer", "resolve", "interface", "http-version",
})
_METHOD = re.compile(r"^[A-Za-z]+$")
_ITEM_SEPARATORS = ("==", ":=@", ":=", "=@", "=", "@", ":")


def program(argv0: str) -> str:
    """The program's name as the readers know it: ``/usr/bin/curl`` and ``curl.exe`` are ``curl``."""
    name = os.path.basename(argv0)
    return name[:-4] if name.lower().endswith(".exe") else name


def requests_of(argv: Sequence[str]) -> list[Request]:
    """Every request the command line sends (argv[0] is the program)."""
    name = program(argv[0])
    args = list(argv[1:])
    if name == "curl":
        return [r for group in _split_next(args) for r in _curl(group)]
    if name in ("wget", "wget2"):
        return _wget(args)
    return _httpie(args, secure=name in ("https", "xhs"))


def _split_next(args: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for arg in args:
        if arg in ("-:", "--next"):
            groups.append([])
        else:
            groups[-1].append(arg)
    return groups


def _curl_options(args: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(options as (long name or -letter, value or None), URLs) of one curl request's words."""
    options: list[tuple[str, str | None]] = []
    urls: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            urls.extend(args[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            if name in _CURL_VALUES and not eq:
                options.append((name, args[i] if i < len(args) else ""))
                i += 1
            elif name in _CURL_VALUES:  # curl has no --opt=value form; read as meant, to fail closed
                options.append((name, value))
            else:
                options.append((arg[2:], None))
        elif arg.startswith("-") and len(arg) > 1:
            for at, letter in enumerate(arg[1:], start=1):
                if letter in _CURL_SHORT_VALUES:
                    value = arg[at + 1:] or (args[i] if i < len(args) else "")
                    if not arg[at + 1:]:
                        i += 1
                    options.append((_CURL_SHORT_NAMES.get(letter, f"-{letter}"), value))
                    break
                options.append((f"-{letter}", None))
        else:
            urls.append(arg)
    return options, urls


def _curl(args: list[str]) -> list[Request]:
    options, urls = _curl_options(args)
    method: str | None = None
    data = upload = head = get = signed = False
    globbing = True
    connects: list[str] = []
    target: str | None = None
    for name, value in options:
        if name == "config":
            raise CannotRead("curl -K/--config reads its options (perhaps the address and method) from a file "
                             "envlabel does not read: pass them on the command line")
        if name == "request":
            method = value
        elif name in ("url", "expand-url") and value is not None:
            urls.append(value)
        elif name in _CURL_DATA:
            data = True
        elif name == "upload-file":
            upload = True
        elif name in ("head", "-I"):
            head = True
        elif name in ("get", "-G"):
            get = True
        elif name in ("globoff", "-g"):
            globbing = False
        elif name == "aws-sigv4":
            signed = True
        elif name == "request-target":
            target = value
        elif name in ("resolve", "connect-to") and value:
            connects.append(_connect_address(name, value))
    chosen = (method or ("HEAD" if head else "PUT" if upload else "POST" if data and not get else "GET")).upper()
    return [Request(chosen, url, connects, globbing and _globbed(url), target, signed) for url in urls]


def _globbed(url: str) -> bool:
    """True when curl expands ``url`` into several (``{a,b}``, ``[1-3]``; an IPv6 host's brackets are not a glob)."""
    rest = re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)?([^/@]*@)?\[[0-9a-fA-F:.%]+\]", "", url)
    return bool(re.search(r"[{\[]", rest))


def _connect_address(name: str, value: str) -> str:
    """The host:port a --resolve HOST:PORT:ADDR or --connect-to H1:P1:H2:P2 really connects to."""
    parts = value.lstrip("+").split(":")
    if name == "resolve" and len(parts) >= 3:
        address = ":".join(parts[2:]).split(",")[0].strip("[]")
        return f"{address}:{parts[1]}"
    if name == "connect-to" and len(parts) >= 4:
        return f"{parts[2].strip('[]') or parts[0]}:{parts[3] or parts[1]}"
    return value


def _wget(args: list[str]) -> list[Request]:
    values: dict[str, list[str]] = {}
    urls: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            urls.extend(args[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            if name in _WGET_VALUES and not eq:
                value = args[i] if i < len(args) else ""
                i += 1
            values.setdefault(name, []).append(value)
        elif arg.startswith("-") and len(arg) > 1:
            for at, letter in enumerate(arg[1:], start=1):
                if letter in _WGET_SHORT_VALUES:
                    value = arg[at + 1:] or (args[i] if i < len(args) else "")
                    if not arg[at + 1:]:
                        i += 1
                    values.setdefault(f"-{letter}", []).append(value)
                    break
        else:
            urls.append(arg)
    if values.get("config"):
        raise CannotRead("wget --config reads its options from a file envlabel does not read")
    method = (values.get("method") or [""])[-1].upper() or (
        "POST" if values.get("post-data") or values.get("post-file") else "GET")
    commands = " ".join(values.get("execute", []) + values.get("-e", [])).lower()
    if any(word in commands for word in ("method", "post", "body")):
        raise CannotRead("wget -e sets how the request is sent, which envlabel does not read: use --method")
    if (values.get("input-file") or values.get("-i")) and method not in ("GET", "HEAD"):
        raise CannotRead("wget -i reads the addresses from a file envlabel does not read: pass them on the line")
    return [Request(method, url) for url in urls]


def _httpie(args: list[str], *, secure: bool) -> list[Request]:
    flags: set[str] = set()
    raw = False
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--") and len(arg) > 2:
            name, eq, _value = arg[2:].partition("=")
            if name in _HTTPIE_VALUES and not eq:
                i += 1
            raw = raw or name == "raw"
            flags.add(name)
        elif arg.startswith("-") and len(arg) > 1:
            for at, letter in enumerate(arg[1:], start=1):
                if letter in _HTTPIE_SHORT_VALUES:
                    if not arg[at + 1:]:
                        i += 1
                    break
        else:
            positionals.append(arg)
    if "offline" in flags or not positionals:
        return []
    # HTTPie's own rule: with two or more words, a first word of letters only is the method
    if len(positionals) >= 2 and _METHOD.match(positionals[0]):
        method, url, items = positionals[0].upper(), positionals[1], positionals[2:]
    else:
        url, items = positionals[0], positionals[1:]
        method = "POST" if raw or any(_item_kind(item) == "data" for item in items) else "GET"
    return [Request(method, _httpie_url(url, secure))]


def _item_kind(arg: str) -> str | None:
    """``data``, ``query`` or ``header`` for an HTTPie request item, None for anything else."""
    found = [(arg.find(sep), -len(sep), sep) for sep in _ITEM_SEPARATORS if arg.find(sep) > 0]
    if not found or "://" in arg or arg.startswith(":"):
        return None
    sep = min(found)[2]
    return "query" if sep == "==" else "header" if sep == ":" else "data"


def _httpie_url(url: str, secure: bool) -> str:
    if url.startswith(":"):  # :3000/path is localhost:3000/path
        url = "localhost" + url
    if "://" not in url:
        url = ("https://" if secure else "http://") + url
    return url
