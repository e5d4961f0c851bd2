"""Which AWS account and region an ``aws`` command acts in, read as the AWS CLI would choose its credentials,
without using them for anything but ``sts:GetCallerIdentity``.

    account_of(environ, profile="prod")     # '222222222222' (the profile's role_arn, or STS with its keys)

The credential chain, in botocore's order:

1. ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in the command's environment, unless ``--profile`` names a
   profile (an explicit profile sets the environment's keys aside, as botocore does);
2. the profile (``--profile``, else ``AWS_PROFILE``, else ``AWS_DEFAULT_PROFILE``, else ``default``) in the
   config file (``AWS_CONFIG_FILE``, else ``~/.aws/config``) and the credentials file
   (``AWS_SHARED_CREDENTIALS_FILE``, else ``~/.aws/credentials``): its ``role_arn`` names the account outright
   (the CLI assumes that role, so that is where the command acts); ``AWS_ROLE_ARN`` (web identity) likewise;
   an SSO profile's ``sso_account_id``; else its access keys, whose account STS tells;
3. anything else (``credential_process``, an instance or container role) cannot be told from here: the
   command is not understood (decided fail closed).

``aws_account_id`` settings and ``AWS_ACCOUNT_ID`` are never believed: they only shape endpoints, and a line
could set them to anything. An STS answer is kept per (access key, secret, endpoint) in this process and on
disk (``$XDG_CACHE_HOME/envlabel/aws-accounts.json``, read only when it is this user's and writable by no one
else; the key is a hash, no secret is stored).
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from envlabel.commands import is_known, shown

DEFAULT_REGION = "us-east-1"
CACHE_FILE = "aws-accounts.json"
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/")
_ACCOUNT = re.compile(r"^\d{12}$")
_memory: dict[str, str] = {}
#: config files read: path -> ((mtime, size), parsed)
_files: dict[str, tuple[tuple[int, int], configparser.RawConfigParser]] = {}
_lock = threading.Lock()


class CannotTell(Exception):  # an answer, worded for the person reading the decision
    """The account (or region) the command acts in cannot be known; the message says why and what to do."""


def profile_name(environ: Mapping[str, str], flag: str | None) -> str:
    """The profile the CLI uses: ``--profile``, ``AWS_PROFILE``, ``AWS_DEFAULT_PROFILE``, else ``default``."""
    return flag or environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or "default"


def region_of(environ: Mapping[str, str], flag: str | None, profile: str) -> str:
    """``--region``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's ``region``, else us-east-1."""
    region = flag or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if region is None:
        try:
            region = _section(_config(environ), _config_section(profile)).get("region")
        except CannotTell:
            region = None
    region = region or DEFAULT_REGION
    if not is_known(region):
        raise CannotTell(f"the region ({shown(region)}) is computed when the command runs; pass --region")
    return region


def account_of(environ: Mapping[str, str], flag: str | None, *, endpoint: str | None = None,
               region: str = DEFAULT_REGION) -> str:
    """The 12-digit account the command's credentials act in; raises CannotTell."""
    if flag is None and environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        env_key, env_secret = environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"]
        _require_known(env_key, env_secret, what="the access key in AWS_ACCESS_KEY_ID")
        return caller_account(env_key, env_secret, environ.get("AWS_SESSION_TOKEN"),
                              _sts_endpoint(environ, endpoint, {}), region)
    name = profile_name(environ, flag)
    _require_known(name, what="the AWS profile")
    config_path, credentials_path = _paths(environ)
    conf = _section(_config(environ), _config_section(name))
    creds = _section(_credentials(environ), name)
    if not conf and not creds and name != "default":
        raise CannotTell(f"the AWS profile {name} is in neither {config_path} nor {credentials_path}, so envlabel "
                         "cannot tell which account the command acts in; name a profile that exists")
    role_arn = conf.get("role_arn") or creds.get("role_arn")
    if role_arn:
        return _account_of_role(role_arn, f"the role_arn of the AWS profile {name}")
    if environ.get("AWS_ROLE_ARN") and environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return _account_of_role(environ["AWS_ROLE_ARN"], "AWS_ROLE_ARN")
    sso = conf.get("sso_account_id")
    if sso:
        if not _ACCOUNT.match(sso):
            raise CannotTell(f"the sso_account_id of the AWS profile {name} ({sso!r}) is not a 12-digit account id")
        return sso
    key = creds.get("aws_access_key_id") or conf.get("aws_access_key_id")
    secret = creds.get("aws_secret_access_key") or conf.get("aws_secret_access_key")
    if key and secret:
        token = creds.get("aws_session_token") or conf.get("aws_session_token")
        return caller_account(key, secret, token, _sts_endpoint(environ, endpoint, conf), region)
    if conf.get("credential_process") or creds.get("credential_process"):
        raise CannotTell(f"the AWS profile {name} gets its credentials from a credential_process, which envlabel "
                         "does not run, so it cannot tell which account the command acts in; give the profile a "
                         "role_arn (or sso_account_id)")
    if name == "default" and not conf and not creds:
        raise CannotTell("no AWS credentials are set for this command (no AWS_ACCESS_KEY_ID, no AWS_PROFILE, no "
                         f"default profile in {config_path} or {credentials_path}), so envlabel cannot tell which "
                         "account it acts in (an instance or container role is not read); pass --profile")
    raise CannotTell(f"cannot tell which account the AWS profile {name} acts in: it has no role_arn, "
                     "sso_account_id or access keys; give it a role_arn")


def caller_account(key: str, secret: str, token: str | None, endpoint: str | None, region: str) -> str:
    """The account of an access key, asked of STS (``sts:GetCallerIdentity``, read-only) once per key."""
    digest = hashlib.sha256("\0".join((key, secret, endpoint or "")).encode()).hexdigest()
    with _lock:
        if digest in _memory:
            return _memory[digest]
    account = _read_cache().get(digest)
    if account is None or not _ACCOUNT.match(str(account)):
        account = _ask_sts(key, secret, token, endpoint, region)
        _write_cache(digest, account)
    with _lock:
        _memory[digest] = str(account)
    return str(account)


def forget() -> None:
    """Drop the accounts learned in this process (tests; a rotated key)."""
    with _lock:
        _memory.clear()
        _files.clear()


def _ask_sts(key: str, secret: str, token: str | None, endpoint: str | None, region: str) -> str:
    import botocore.config
    import botocore.session

    session = botocore.session.Session()
    config = botocore.config.Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 1})
    client: Any = session.create_client("sts", region_name=region if region != "aws-global" else DEFAULT_REGION,
                                   endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                                   aws_session_token=token, config=config)
    try:
        account = client.get_caller_identity()["Account"]
    except Exception as exc:  # any failure means the account is not known: fail closed
        raise CannotTell(f"envlabel could not learn the account of the access key {key[:8]}... "
                         f"(sts:GetCallerIdentity failed: {exc}); check the credentials and that STS is "
                         "reachable") from exc
    finally:
        client.close()
    if not _ACCOUNT.match(str(account)):
        raise CannotTell(f"STS answered {account!r} for the access key {key[:8]}..., which is no account id")
    return str(account)


def _account_of_role(arn: str, where: str) -> str:
    match = _ROLE_ARN.match(arn.strip())
    if match is None:
        raise CannotTell(f"{where} ({shown(arn)!r}) is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), so "
                         "envlabel cannot tell which account the command acts in")
    return match[1]


def _require_known(*values: str, what: str) -> None:
    for value in values:
        if not is_known(value):
            raise CannotTell(f"{what} ({shown(value)}) is computed when the command runs, so envlabel cannot "
                             "tell which account it acts in; write it out")


def _sts_endpoint(environ: Mapping[str, str], endpoint: str | None, conf: Mapping[str, str]) -> str | None:
    """Where to ask STS: the command's --endpoint-url when it is an emulator's (moto, LocalStack: one endpoint
    for every service, as the boto3 guard assumes), else the configured STS or global endpoint."""
    if endpoint and not is_known(endpoint):
        raise CannotTell(f"the --endpoint-url ({shown(endpoint)}) is computed when the command runs, so envlabel "
                         "cannot ask which account the credentials act in; write it out")
    if endpoint and not (urlsplit(endpoint).hostname or "").endswith("amazonaws.com"):
        return endpoint
    for value in (environ.get("AWS_ENDPOINT_URL_STS"), environ.get("AWS_ENDPOINT_URL"), conf.get("endpoint_url")):
        if value and is_known(value):
            return value
    return None


def _paths(environ: Mapping[str, str]) -> tuple[str, str]:
    home = environ.get("HOME")
    if home is not None and not is_known(home):
        raise CannotTell(f"the home directory the command runs with ({shown(home)}) is not known, so neither are "
                         "its AWS profiles; set AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE, or pass --profile "
                         "with keys in the environment")
    base = home or os.path.expanduser("~")
    config = environ.get("AWS_CONFIG_FILE") or os.path.join(base, ".aws", "config")
    credentials = environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.join(base, ".aws", "credentials")
    for path in (config, credentials):
        _require_known(path, what="the AWS config file")
    return os.path.expanduser(config), os.path.expanduser(credentials)


def _config_section(profile: str) -> str:
    return "default" if profile == "default" else f"profile {profile}"


def _config(environ: Mapping[str, str]) -> configparser.RawConfigParser:
    return _parse(_paths(environ)[0])


def _credentials(environ: Mapping[str, str]) -> configparser.RawConfigParser:
    return _parse(_paths(environ)[1])


def _parse(path: str) -> configparser.RawConfigParser:
    """The file read as the CLI reads it, once per version of it (its size and modification time)."""
    try:
        info = os.stat(path)
        version: tuple[int, int] | None = (info.st_mtime_ns, info.st_size)
    except OSError:
        version = None
    with _lock:
        cached = _files.get(path)
    if cached is not None and version is not None and cached[0] == version:
        return cached[1]
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        return parser  # as the CLI: no file, no profiles in it
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise CannotTell(f"envlabel cannot read the AWS config file {path} ({exc}); fix it") from exc
    if version is not None:
        with _lock:
            _files[path] = (version, parser)
    return parser


def _section(parser: configparser.RawConfigParser, name: str) -> dict[str, str]:
    names = [name, "profile default"] if name == "default" else [name]
    for candidate in names:
        if parser.has_section(candidate):
            return {k.lower(): v.strip() for k, v in parser.items(candidate)}
    return {}


# -- the disk cache --------------------------------------------------------------------------------
def _cache_path() -> str:
    # this process's own environment: a command line must not choose which cache envlabel believes
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "envlabel", CACHE_FILE)


def _read_cache() -> dict[str, Any]:
    path = _cache_path()
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_uid != os.getuid() or info.st_mode & 0o022:
                return {}  # another user's, or writable by others: anyone could have written it
            data = json.loads(handle.read(1 << 20))
    except (OSError, ValueError):
        return {}
    accounts = data.get("accounts") if isinstance(data, dict) and data.get("version") == 1 else None
    return accounts if isinstance(accounts, dict) else {}


def _write_cache(digest: str, account: str) -> None:
    path = _cache_path()
    accounts = {**_read_cache(), digest: account}
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".aws-accounts.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump({"version": 1, "accounts": accounts}, out)
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except OSError:
            os.unlink(temporary)
            raise
    except OSError:
        pass  # a cache that cannot be written only costs the next process one STS call
