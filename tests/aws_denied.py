"""A loopback proxy in front of moto that answers chosen requests with a genuine AWS 403 AccessDenied
(or a throttling error, to exercise retries).

moto has no "deny this region" switch, so this sits between botocore and
moto: it reads each request's SigV4 credential scope (access key, date,
region, service) and, when a rule matches, answers as the real service
would, in that service's protocol, so botocore parses a real ClientError:

- JSON protocol (X-Amz-Target: Organizations, tagging, DynamoDB): ``{"__type": ...}``
- EC2: ``<Response><Errors><Error>`` with UnauthorizedOperation
- query protocol (RDS, STS, IAM): ``<ErrorResponse><Error>``
- S3 (REST-XML): ``<Error>``
- REST-JSON (Lambda, EKS): ``x-amzn-ErrorType`` header and ``{"message": ...}``

Everything else is forwarded verbatim. It learns which account each
assumed-role access key belongs to from the AssumeRole answers it forwards,
so a rule can deny one account.

    with DeniedProxy(moto_url, deny_region("eu-west-1")) as proxy:
        scanner = AwsScanner(source_with(endpoint_url=proxy.url))
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

_CREDENTIAL = re.compile(r"Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")
_ACCESS_KEY_ID = re.compile(rb"<AccessKeyId>([^<]+)</AccessKeyId>")
_ROLE_ACCOUNT = re.compile(r"^arn:[^:]+:iam::(\d{12}):role/")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


@dataclass(frozen=True)
class SignedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    access_key: str
    region: str
    service: str
    #: the account the access key acts in, when known (learned from AssumeRole, or given)
    account: str | None

    @property
    def operation(self) -> str:
        """The operation for JSON and query protocols (X-Amz-Target / Action=); the path otherwise."""
        target = self.headers.get("x-amz-target")
        if target:
            return target.rsplit(".", 1)[-1]
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            action = urllib.parse.parse_qs(self.body.decode()).get("Action")
            if action:
                return action[0]
        return self.path


Rule = Callable[[SignedRequest], bool]


def deny_region(region: str) -> Rule:
    return lambda request: request.region == region


def deny_account(account: str) -> Rule:
    return lambda request: request.account == account


def only_first(times: int, rule: Rule) -> Rule:
    """``rule``, but only for its first ``times`` matches (a throttle that clears)."""
    hits = [0]
    lock = threading.Lock()

    def limited(request: SignedRequest) -> bool:
        with lock:
            if rule(request) and hits[0] < times:
                hits[0] += 1
                return True
        return False

    return limited


def deny_operation(operation: str, body_contains: str = "") -> Rule:
    """Deny one operation (optionally only when its body mentions ``body_contains``, e.g. an account id)."""
    return lambda request: request.operation == operation and body_contains.encode() in request.body


class DeniedProxy:
    """Starts on a free loopback port; stop() (or leaving the ``with``) shuts it down."""

    def __init__(self, upstream: str, deny: Rule, accounts: dict[str, str] | None = None,
                 throttle: Rule | None = None) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.deny = deny
        self.throttle: Rule = throttle or (lambda _: False)
        self.throttled: list[SignedRequest] = []
        #: access key -> account; the plain test credentials act in moto's default account
        self.accounts: dict[str, str] = {"testing": "123456789012", **(accounts or {})}
        self.denied: list[SignedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="denied-proxy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> DeniedProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as botocore expects

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: object) -> None:
                pass

            def handle_one(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = proxy.signed(self.command, self.path, headers, body)
                for kind, rule, log in (("denied", proxy.deny, proxy.denied),
                                        ("throttled", proxy.throttle, proxy.throttled)):
                    if request is not None and rule(request):
                        with proxy._lock:
                            log.append(request)
                        self.reply(*error_reply(request, kind))
                        return
                status, reply_headers, reply = proxy.forward(self.command, self.path, self.headers.items(), body)
                if request is not None and request.operation == "AssumeRole" and status == 200:
                    proxy.learn(request, reply)
                self.reply(status, reply_headers, reply)

            def reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_one

        return Handler

    def signed(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SignedRequest | None:
        match = _CREDENTIAL.search(headers.get("authorization", ""))
        if match is None:
            return None
        key, _, region, service = match.groups()
        with self._lock:
            account = self.accounts.get(key)
        return SignedRequest(method, path, headers, body, key, region, service, account)

    def learn(self, request: SignedRequest, reply: bytes) -> None:
        role = urllib.parse.parse_qs(request.body.decode()).get("RoleArn", [""])[0]
        account, key = _ROLE_ACCOUNT.match(role), _ACCESS_KEY_ID.search(reply)
        if account and key:
            with self._lock:
                self.accounts[key.group(1).decode()] = account.group(1)

    def forward(self, method: str, path: str, headers: object, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:  # type: ignore[attr-defined]
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()


#: error codes as each protocol's services spell them
_CODES = {
    "denied": {"json": "AccessDeniedException", "ec2": "UnauthorizedOperation", "s3": "AccessDenied",
               "query": "AccessDenied", "rest-json": "AccessDeniedException"},
    "throttled": {"json": "ThrottlingException", "ec2": "RequestLimitExceeded", "s3": "SlowDown",
                  "query": "Throttling", "rest-json": "TooManyRequestsException"},
}


def protocol_of(request: SignedRequest) -> str:
    if "x-amz-target" in request.headers:
        return "json"
    if request.service in ("ec2", "s3"):
        return request.service
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return "query"
    return "rest-json"


def error_reply(request: SignedRequest, kind: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """A ``denied`` (403) or ``throttled`` (400; S3 503) answer in the protocol of the request's service."""
    protocol = protocol_of(request)
    code = _CODES[kind][protocol]
    status = 403 if kind == "denied" else 503 if protocol == "s3" else 400
    request_id = f"{kind}-by-test-proxy"
    message = (f"User: arn:aws:sts::{request.account or '000000000000'}:assumed-role/test/denied is not "
               f"authorized to perform: {request.service}:{request.operation} in region {request.region}"
               if kind == "denied" else "Rate exceeded")
    common = [("x-amzn-RequestId", request_id)]
    if protocol == "json":
        body = json.dumps({"__type": code, "message": message}).encode()
        return status, [*common, ("Content-Type", "application/x-amz-json-1.1")], body
    if protocol == "ec2":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>"
                f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>").encode()
        return status, [*common, ("Content-Type", "text/xml;charset=UTF-8")], body
    if protocol == "s3":
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
                f"<Message>{message}</Message><RequestId>{request_id}</RequestId></Error>").encode()
        return status, [("x-amz-request-id", request_id), ("Content-Type", "application/xml")], body
    if protocol == "query":
        body = (f"<ErrorResponse xmlns=\"https://{request.service}.amazonaws.com/doc/\"><Error><Type>Sender</Type>"
                f"<Code>{code}</Code><Message>{message}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        return status, [*common, ("Content-Type", "text/xml")], body
    body = json.dumps({"message": message}).encode()
    return status, [*common, ("x-amzn-ErrorType", code), ("Content-Type", "application/json")], body
