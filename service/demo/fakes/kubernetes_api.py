"""A small faithful fake of the Kubernetes API server, over real HTTP on loopback.

No kube-apiserver can run in tests or in ``envlabel demo``, so this speaks the
real REST paths and JSON shapes the official ``kubernetes`` client and
``kubectl apply --validate=false`` use: discovery (``/api``, ``/apis``,
``/version``), list with ``labelSelector``, ``limit``/``continue`` and a list
``resourceVersion``, get/create/update/patch/delete, watch as chunked JSON
lines with bookmarks, and 410 Gone for compacted resource versions and
expired continue tokens. Objects are served complete (the client validates
required fields), or as ``PartialObjectMetadata`` when the client asks for
metadata only. Every request is logged so tests can assert which verbs and
resources a client used. A pod's exec, attach and portforward (defined with
``fake.define("", "v1", "pods", "Pod")``) are logged with the verb ``create``
and refused with 400: the fake opens no streams. JSON only: kubectl's protobuf
requests are not served. Writes and connects pass validating admission first
(``ValidatingWebhookConfiguration`` webhooks called over HTTPS, ``dryRun``
honoured: kubernetes_admission.py).

    url, fake = start_fake_cluster()
    fake.seed("namespaces", "payments", labels={"environment": "staging"})
    fake.seed("deployments", "api", "payments")
    write_kubeconfig(path, url)
    ...
    fake.stop()
"""

from __future__ import annotations

import contextlib
import copy
import json
import select
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from envlabel.service.demo.fakes.kubernetes_admission import Write, admit, dry_run_answer, is_dry_run
from envlabel.service.demo.fakes.kubernetes_state import (
    CATEGORY_ALL,
    KINDS,
    META_GROUP,
    VERBS,
    ApiError,
    FakeKubernetes,
    Kind,
    Obj,
    RequestRecord,
    parse_selector,
    partial_metadata,
    seed_demo_cluster,
    seed_estate,
    skeleton,
)

__all__ = ["KINDS", "ApiError", "FakeKubernetes", "Kind", "RequestRecord", "main", "parse_selector",
           "seed_demo_cluster", "seed_estate", "skeleton", "start_fake_cluster", "write_kubeconfig"]


#: pod subresources that open a stream (a websocket upgrade on the real server)
CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})


# -- HTTP ------------------------------------------------------------------------------------------
def _group_versions(fake: FakeKubernetes) -> dict[str, list[Kind]]:
    grouped: dict[str, list[Kind]] = {}
    for kind in fake.kinds.values():
        grouped.setdefault(kind.api_version, []).append(kind)
    return grouped


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # without it every small response waits ~40 ms for the client's delayed ACK
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is fake.requests

    @property
    def fake(self) -> FakeKubernetes:
        return self.server.fake

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _send(self, code: int, body: Obj) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        try:
            return json.loads(self.raw_body or b"{}")
        except json.JSONDecodeError:
            raise ApiError(415, "UnsupportedMediaType", "the fake serves JSON only (kubectl: use apply -f with "
                           "--validate=false, not create namespace, which sends protobuf)") from None

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        # read every body (a DELETE carries DeleteOptions): what is left unread would corrupt the kept-alive connection
        length = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            discovery = self._discovery(url.path)
            if discovery is not None:
                self.fake.requests.append(RequestRecord(method, url.path, "get", query=query))
                self._send(200, discovery)
                return
            self._resource(method, url.path, query)
        except ApiError as exc:
            self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _discovery(self, path: str) -> Obj | None:
        path = path.rstrip("/")
        grouped = _group_versions(self.fake)
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-envlabel-fake", "gitCommit": "0" * 40,
                    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.0",
                    "compiler": "gc", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for gv in grouped:
                if "/" in gv:
                    groups.setdefault(gv.split("/")[0], []).append(gv)
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": gv, "version": gv.split("/")[1]} for gv in gvs],
                 "preferredVersion": {"groupVersion": gvs[0], "version": gvs[0].split("/")[1]}}
                for g, gvs in sorted(groups.items())]}
        gv = path.removeprefix("/apis/") if path.startswith("/apis/") else path.removeprefix("/api/")
        if path.startswith(("/api/", "/apis/")) and gv in grouped:
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": k.resource, "singularName": k.kind.lower(), "namespaced": k.namespaced, "kind": k.kind,
                 "verbs": VERBS, **({"shortNames": list(k.short_names)} if k.short_names else {}),
                 **({"categories": ["all"]} if k.resource in CATEGORY_ALL else {})}
                for k in grouped[gv]]}
        return None

    def _route(self, path: str) -> tuple[Kind, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        kind = self.fake.kinds.get((group, version, rest[0]))
        if kind is None or (namespace is not None and not kind.namespaced):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        return kind, namespace, rest[1] if len(rest) > 1 else None

    def _resource(self, method: str, path: str, query: dict[str, str]) -> None:
        kind, namespace, name = self._route(path)
        if name is not None and (kind.group, kind.resource) == ("", "pods") and self._subresource(path):
            self._connect(method, path, kind, namespace, name, query=query)
            return
        watching = query.get("watch") in ("1", "true")
        verbs = {"GET": "get" if name else ("watch" if watching else "list"), "POST": "create", "PUT": "update",
                 "PATCH": "patch", "DELETE": "delete" if name else "deletecollection"}
        verb = verbs[method]
        self.fake.requests.append(RequestRecord(method, path, verb, kind.group, kind.resource, namespace, name, query,
                                                self.headers.get("Accept") or ""))
        if (kind.group, kind.resource) in self.fake.forbidden:
            scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            raise ApiError(403, "Forbidden", f'{kind.resource}{"." + kind.group if kind.group else ""} is forbidden: '
                           f'User "system:serviceaccount:envlabel:envlabel" cannot {verb} resource "{kind.resource}" '
                           f'in API group "{kind.group}" {scope}')
        if verb in ("create", "update", "patch", "delete"):
            self._write(verb, kind, namespace, name, query)
            return
        metadata_only = "as=PartialObjectMetadata" in (self.headers.get("Accept") or "")
        if verb == "watch":
            self._watch(kind, namespace, query, metadata_only)
        elif verb == "list":
            body = self.fake.list_objects(kind, namespace, query.get("labelSelector", ""), int(query.get("limit") or 0),
                                  query.get("continue", ""))
            if metadata_only:
                body.update(kind="PartialObjectMetadataList", apiVersion=META_GROUP,
                            items=[partial_metadata(i) for i in body["items"]])
            self._send(200, body)
        elif verb == "get":
            assert name is not None
            with self.fake.cond:
                obj = copy.deepcopy(self.fake.find(kind, namespace, name))
            self._send(200, partial_metadata(obj) if metadata_only else obj)
        else:
            raise ApiError(405, "MethodNotAllowed", f"{verb} is not served by the fake")

    def _write(self, verb: str, kind: Kind, namespace: str | None, name: str | None, query: dict[str, str]) -> None:
        """create, update, patch, delete: validating admission first, then stored (unless ``dryRun``)."""
        body: Any = self._body() if self.raw_body or verb != "delete" else None
        write = Write(verb, kind, namespace, name, body, query, list(self.headers.items()))
        admitted = admit(self.fake, write)
        if is_dry_run(write):
            self._send(201 if verb == "create" else 200, dry_run_answer(verb, kind, admitted))
        elif verb == "create":
            self._send(201, self.fake.create(kind, namespace, body))
        elif verb == "delete":
            assert name is not None
            self._send(200, self.fake.delete(kind, namespace, name))
        else:
            assert name is not None
            change = self.fake.update if verb == "update" else self.fake.patch
            self._send(200, change(kind, namespace, name, body))

    @staticmethod
    def _subresource(path: str) -> str | None:
        """``exec``, ``attach`` or ``portforward`` for a pod's connect path (``.../pods/NAME/exec``), else None."""
        parts = [p for p in path.split("/") if p]
        if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[6] in CONNECT_SUBRESOURCES:
            return parts[6]
        return None

    def _connect(self, method: str, path: str, kind: Kind, namespace: str | None, name: str, *,
                 query: dict[str, str]) -> None:
        """exec, attach, portforward: logged as the RBAC verb ``create``, then refused (no streams here)."""
        self.fake.requests.append(RequestRecord(method, path, "create", kind.group, kind.resource, namespace, name,
                                                query))
        with self.fake.cond:
            self.fake.find(kind, namespace, name)  # 404 for a missing pod, as the real server answers
        admit(self.fake, Write("connect", kind, namespace, name, None, query, list(self.headers.items()),
                               self._subresource(path)))
        raise ApiError(400, "BadRequest", f"the fake API server does not stream {self._subresource(path)}: "
                       "it records the request and refuses it")

    def _watch(self, kind: Kind, namespace: str | None, query: dict[str, str], metadata_only: bool) -> None:
        fake = self.fake
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        selector = query.get("labelSelector", "")
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or 1800)
        interval = fake.bookmark_interval
        next_bookmark = time.monotonic() + interval if interval else float("inf")
        shape: Callable[[Obj], Obj] = partial_metadata if metadata_only else (lambda o: o)
        since, initial, expired_at, bookmark_seen = self._open_watch(kind, namespace, query.get("resourceVersion", ""),
                                                                     selector)
        try:
            for obj in initial:
                self._chunk({"type": "ADDED", "object": shape(obj)})
            while time.monotonic() < deadline:
                with fake.cond:
                    error: ApiError | None = None
                    try:
                        events, head = fake.watch_events(kind, namespace, since, selector, expired_at)
                    except ApiError as exc:
                        events, head, error = [], since, exc
                    wanted = bookmarks and (bookmark_seen != fake.bookmarks or time.monotonic() >= next_bookmark)
                    bookmark_seen = fake.bookmarks
                    stopping = fake.stopping
                    idle = not events and error is None and not wanted and not stopping
                    if idle:
                        fake.cond.wait(max(0.0, min(0.5, next_bookmark - time.monotonic(),
                                                    deadline - time.monotonic())))
                if error is not None:
                    self._chunk({"type": "ERROR", "object": error.status()})
                    break
                for _, event_type, obj in events:
                    self._chunk({"type": event_type, "object": shape(obj)})
                since = head  # every event of this kind up to head has been sent
                if wanted:
                    next_bookmark = time.monotonic() + interval if interval else float("inf")
                    self._chunk({"type": "BOOKMARK", "object": {"kind": kind.kind, "apiVersion": kind.api_version,
                                                                "metadata": {"resourceVersion": str(since)}}})
                if stopping or (idle and self._client_gone()):
                    break
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client went away
        self.close_connection = True

    def _open_watch(self, kind: Kind, namespace: str | None, version: str,
                    selector: str) -> tuple[int, list[Obj], int, int]:
        """(the version to follow from, the objects to send as ADDED first, the expiry and bookmark counters)."""
        fake = self.fake
        with fake.cond:
            initial: list[Obj] = []
            if version in ("", "0"):  # "any version": the current state as ADDED, then changes
                listed = fake.list_objects(kind, namespace, selector)
                initial = [{"apiVersion": kind.api_version, "kind": kind.kind, **o} for o in listed["items"]]
                since = fake.rv
            else:
                since = int(version) if version.isdigit() else -1
            # a version below the compaction floor: a counter that can never match makes the first poll a 410
            expired_at = fake.expired if since >= fake.compacted_rv else -1
            return since, initial, expired_at, fake.bookmarks

    def _chunk(self, event: Obj) -> None:
        data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeKubernetes) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


def start_fake_cluster(host: str = "127.0.0.1", port: int = 0,
                       bookmark_interval: float | None = None) -> tuple[str, FakeKubernetes]:
    """Serve a new fake cluster on ``host:port`` (0 = a free port) from a background thread."""
    fake = FakeKubernetes(bookmark_interval)
    server = _Server((host, port), fake)
    fake.server = server
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-kubernetes", daemon=True)
    thread.start()
    fake.seed("namespaces", "default")
    return f"http://{host}:{server.server_address[1]}", fake


def write_kubeconfig(path: str | Path, url: str, context: str = "fake",
                     token: str = "fake-token") -> Path:  # noqa: S107 - the fake accepts any token
    """A kubeconfig whose ``context`` points at ``url`` with a bearer token."""
    path = Path(path)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
    }, indent=2))
    return path


def main(argv: list[str] | None = None) -> int:
    """Serve a seeded fake cluster until interrupted; prints its URL on the first line of stdout.

        python -m envlabel.service.demo.fakes.kubernetes_api --namespaces 500 --per-namespace 100
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--namespaces", type=int, default=0)
    parser.add_argument("--per-namespace", type=int, default=0)
    parser.add_argument("--kubeconfig", help="also write a kubeconfig pointing at the fake here")
    parser.add_argument("--demo", action="store_true", help="seed the demo cluster (seed_demo_cluster)")
    args = parser.parse_args(argv)
    url, fake = start_fake_cluster(port=args.port)
    seed_estate(fake, args.namespaces, args.per_namespace)
    if args.demo:
        seed_demo_cluster(fake)
    if args.kubeconfig:
        write_kubeconfig(args.kubeconfig, url)
    print(url, flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
