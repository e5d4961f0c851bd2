"""The ``aws`` reader: an AWS CLI command (v1 or v2 syntax) read into the API calls it makes, and their targets
derived by the same code as the boto3 guard (:func:`envlabel.guard.arns.targets_of`).

    read(["aws", "rds", "delete-db-instance", "--db-instance-identifier", "orders-db", "--profile", "prod"], ctx)
    # [Operation(tool="aws", target="arn:aws:rds:us-east-1:222222222222:db:orders-db",
    #            action="rds:DeleteDBInstance")]

``aws [global options] SERVICE OPERATION [parameters]``, global options anywhere (``--region``, ``--profile``,
``--endpoint-url``...). SERVICE as the CLI spells it (``s3api`` is botocore's ``s3``, ``configservice``
``config``, ``deploy`` ``codedeploy``; any other botocore service by its name); OPERATION the botocore
operation whose ``xform_name`` it is (``delete-db-instance`` is ``DeleteDBInstance``); the parameters read
onto its input shape by :mod:`envlabel.commands.aws_params`. The region and account are the command's
(:mod:`envlabel.commands.aws_account`); the account is only looked for when a target needs it.

As the guard: reads (by :mod:`envlabel.actions`) and credential calls (sts, sso) perform no checked operation;
a call naming no resource is checked against its account's contents. The CLI's own commands: ``aws s3``
(``rm``, ``rb``, ``mv``, ``sync --delete`` delete; ``cp``, ``mb``, ``website`` write; ``ls``, ``presign``
read), ``wait`` (polls reads), ``help``, ``configure``, ``history``, and a few customizations
(:data:`CUSTOM`). Anything else the CLI would run that cannot be read, or a value computed at run time, is an
:class:`~envlabel.commands.Unparsed` naming the account as its scope when that is known.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from envlabel.commands import CommandContext, Operation, Unparsed, is_known, shown
from envlabel.commands.aws_account import CannotTell, account_of, profile_name, region_of
from envlabel.commands.aws_params import CannotRead, params_of
from envlabel.guard.arns import EXEMPT_SERVICES, action_name, is_checked, targets_of
from envlabel.parameters import jsonable

GLOBAL_VALUES = frozenset({"region", "profile", "endpoint-url", "output", "query", "color", "ca-bundle",
                           "cli-read-timeout", "cli-connect-timeout", "cli-binary-format"})
GLOBAL_FLAGS = frozenset({"debug", "no-verify-ssl", "no-paginate", "no-sign-request", "no-cli-pager",
                          "cli-auto-prompt", "no-cli-auto-prompt", "v2-debug"})
#: the CLI's names for botocore services it renames (as scripts/aws_actions.py's CLI_NAMES)
CLI_NAMES = {"s3api": "s3", "configservice": "config", "deploy": "codedeploy", "runtime.sagemaker": "sagemaker-runtime"}
#: commands that only read or change the local CLI, never a cloud resource
LOCAL_COMMANDS = frozenset({"help", "configure", "history", "cli-dev", "login", "logout"})
#: a stand-in account: a target holding it needs the real account, which is only then looked for
_PENDING = "999999999999"

#: (botocore service, CLI command) -> the calls it makes: (service, operation, {flag: (member, takes a list)}),
#: an empty list when it calls nothing that is checked
CUSTOM: dict[tuple[str, str], list[tuple[str, str, dict[str, tuple[str, bool]]]]] = {
    ("cloudformation", "deploy"): [("cloudformation", "ExecuteChangeSet", {"stack-name": ("StackName", False)})],
    ("cloudformation", "package"): [("s3", "PutObject", {"s3-bucket": ("Bucket", False)})],
    ("emr", "terminate-clusters"): [("emr", "TerminateJobFlows", {"cluster-ids": ("JobFlowIds", True)})],
    ("emr", "create-cluster"): [("emr", "RunJobFlow", {})],
    ("emr", "add-steps"): [("emr", "AddJobFlowSteps", {"cluster-id": ("JobFlowId", False)})],
    ("emr", "modify-cluster-attributes"): [("emr", "SetTerminationProtection",
                                            {"cluster-id": ("JobFlowIds", True)})],
    ("ecr", "get-login-password"): [("ecr", "GetAuthorizationToken", {})],
    ("ecr", "get-login"): [("ecr", "GetAuthorizationToken", {})],
    ("ecr-public", "get-login-password"): [("ecr-public", "GetAuthorizationToken", {})],
    ("codeartifact", "login"): [("codeartifact", "GetAuthorizationToken", {"domain": ("domain", False)})],
    ("ec2-instance-connect", "ssh"): [("ec2-instance-connect", "SendSSHPublicKey",
                                       {"instance-id": ("InstanceId", False)})],
    ("ec2-instance-connect", "open-tunnel"): [("ec2-instance-connect", "OpenTunnel",
                                               {"instance-id": ("InstanceId", False)})],
    ("ecs", "deploy"): [("ecs", "UpdateService", {"service": ("service", False), "cluster": ("cluster", False)})],
    ("rds", "add-option-to-option-group"): [("rds", "ModifyOptionGroup",
                                             {"option-group-name": ("OptionGroupName", False)})],
    ("rds", "remove-option-from-option-group"): [("rds", "ModifyOptionGroup",
                                                  {"option-group-name": ("OptionGroupName", False)})],
    ("eks", "update-kubeconfig"): [], ("eks", "get-token"): [], ("logs", "tail"): [],
    ("codecommit", "credential-helper"): [], ("cloudtrail", "validate-logs"): [], ("ddb", "select"): [],
    ("config", "get-status"): [],
}
#: the high-level ``aws s3`` commands' options that take a value (``--sse`` only one of its choices)
S3_VALUES = frozenset({"exclude", "include", "acl", "storage-class", "sse-c", "sse-c-key", "sse-kms-key-id",
                       "sse-c-copy-source", "sse-c-copy-source-key", "website-redirect", "content-type",
                       "cache-control", "content-disposition", "content-encoding", "content-language", "expires",
                       "metadata", "metadata-directive", "expected-size", "request-payer", "page-size",
                       "source-region", "copy-props", "checksum-algorithm", "checksum-mode", "index-document",
                       "error-document", "expires-in", "bucket-name-prefix", "bucket-region", "grants"})
S3_FLAGS = frozenset({"recursive", "force", "delete", "dryrun", "quiet", "only-show-errors", "no-progress",
                      "follow-symlinks", "no-follow-symlinks", "exact-timestamps", "size-only", "human-readable",
                      "summarize", "ignore-glacier-warnings", "force-glacier-transfer", "no-guess-mime-type",
                      "no-overwrite", "sse"})
_SSE_CHOICES = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
_S3_ARN_BUCKET = re.compile(r"^(arn:[^:]+:s3(?:-outposts|-object-lambda)?:[^:]*:[^:]*:(?:outpost/[^/]+/)?"
                            r"(?:accesspoint|bucket)/[^/]+)(?:/(.*))?$")
_RDS_HOST = re.compile(r"^([a-z][a-z0-9-]*)\.(cluster-(?:ro-)?)?[a-z0-9]+\.([a-z]{2}(?:-[a-z]+)+-\d)\.rds\.")

Call = tuple[str, str, dict[str, Any]]


@dataclass(slots=True)
class _Command:
    """One aws command: its global options and what the account and region resolve to."""

    context: CommandContext
    profile: str | None = None
    region_flag: str | None = None
    endpoint: str | None = None
    words: list[str] = field(default_factory=list)
    _account: str | None = None

    def region(self) -> str:
        return region_of(self.context.environ, self.region_flag, profile_name(self.context.environ, self.profile))

    def account(self) -> str:
        if self._account is None:
            self._account = account_of(self.context.environ, self.profile, endpoint=self.endpoint,
                                       region=self.region())
        return self._account

    def scope(self) -> str:
        """The account, for an Unparsed, when it can be told; else ""."""
        try:
            return self.account()
        except CannotTell:
            return ""


def read(argv: Sequence[str], context: CommandContext) -> list[Operation | Unparsed]:
    """The operations of one ``aws`` command (``argv[0]`` is the program as written)."""
    command = _Command(context)
    try:
        _split_globals(command, list(argv[1:]))
        calls = _calls(command)
    except CannotRead as exc:
        return [Unparsed("aws", "", str(exc), scope=command.scope())]
    except CannotTell as exc:
        return [Unparsed("aws", "", str(exc))]
    try:
        return [op for service, operation, params in calls for op in _operations(command, service, operation,
                                                                                  params)]
    except CannotTell as exc:
        return [Unparsed("aws", "", str(exc))]


def _split_globals(command: _Command, args: list[str]) -> None:
    """Take the global options out of ``args`` (the CLI reads them anywhere on the line)."""
    i = 0
    while i < len(args):
        word = args[i]
        name, eq, value = word[2:].partition("=") if word.startswith("--") else ("", "", "")
        name = _global_name(name) if name else name
        if name in GLOBAL_VALUES:
            if not eq:
                if i + 1 >= len(args):
                    raise CannotRead(f"--{name} needs a value")
                value = args[i + 1]
                i += 1
            if name == "profile":
                command.profile = value
            elif name == "region":
                command.region_flag = value
            elif name == "endpoint-url":
                command.endpoint = value
        elif name not in GLOBAL_FLAGS:
            command.words.append("--version" if name == "version" else word)
        i += 1


def _global_name(name: str) -> str:
    """The global option ``--name`` is, argparse's abbreviations included: the CLI's main parser reads them
    before any command sees its arguments, so ``--prof prod`` is ``--profile prod`` wherever it stands."""
    if name in GLOBAL_VALUES or name in GLOBAL_FLAGS or len(name) < 3:
        return name
    matches = [g for g in (*GLOBAL_VALUES, *GLOBAL_FLAGS, "version") if g.startswith(name)]
    return matches[0] if len(matches) == 1 else name


def _calls(command: _Command) -> list[Call]:
    """The API calls the command makes: (botocore service, operation, parameters)."""
    words = command.words
    if _runs_nothing(words):
        return []
    cli_service, cli_operation, rest = words[0], words[1], words[2:]
    special = _SPECIAL.get(cli_service)
    calls = special(command, cli_operation, rest) if special is not None else None
    if calls is not None:
        return calls
    service = CLI_NAMES.get(cli_service, cli_service)
    if service in EXEMPT_SERVICES or cli_operation == "wait":
        return []  # credentials only (sts, sso login), never a resource; a waiter polls reads
    if (service, cli_operation) in CUSTOM:
        return [(s, op, _picked(rest, flags)) for s, op, flags in CUSTOM[(service, cli_operation)]]
    return _api_call(command, service, cli_service, cli_operation, rest)


def _runs_nothing(words: list[str]) -> bool:
    """True for ``aws``, ``aws --version``, help, and the CLI's local commands (``configure``...)."""
    if not words or "--version" in words or "--help" in words or "-h" in words:
        return True
    if not is_known(words[0]) or (len(words) > 1 and not is_known(words[1])):
        raise CannotRead(f"the AWS CLI command is computed when it runs ({shown(' '.join(words[:2]))}); write "
                         "it out")
    return words[0] in LOCAL_COMMANDS or len(words) < 2 or words[1] == "help" or words[2:] == ["help"]


def _api_call(command: _Command, service: str, cli_service: str, cli_operation: str, rest: list[str]) -> list[Call]:
    """One botocore operation, its parameters read from the command's flags (reads: none, unread)."""
    model = service_model(service)
    if model is None:
        raise CannotRead(f"the AWS CLI has no service {cli_service!r} that envlabel knows (botocore "
                         f"{_botocore_version()}); check the spelling")
    operation = operation_of(service, cli_operation)
    if operation is None:
        raise CannotRead(f"aws {cli_service} has no command {cli_operation!r} that envlabel knows (botocore "
                         f"{_botocore_version()}); check the spelling (aws {cli_service} help)")
    if not is_checked(service, operation) or any(w.startswith("--generate-cli-skeleton") for w in rest):
        return []  # a read, whatever its parameters (as the guard); a skeleton is printed, nothing called
    op_model = model.operation_model(operation)
    params = params_of(op_model, rest, service=service, cli_operation=cli_operation, cwd=command.context.cwd,
                       streaming_output=bool(op_model.has_streaming_output))
    return [(service, operation, params)]


def _operations(command: _Command, service: str, operation: str, params: dict[str, Any]) -> list[Operation]:
    """The checked operations of one call: one per target, as the guard derives them."""
    if not is_checked(service, operation):
        return []
    if service == "rds-db":  # generate-db-auth-token: the database is named in the parameters already
        return [Operation("aws", target, action_name(service, operation)) for target in params["targets"]]
    region = command.region()
    targets = targets_of(service, operation, params, region, _PENDING)
    if any(_PENDING in t.id or _PENDING in (t.fallback or "") for t in targets):
        targets = targets_of(service, operation, params, region, command.account())
    action = action_name(service, operation)
    sent = jsonable({k: v for k, v in params.items() if k != "targets"})
    return [Operation("aws", t.id, action, contents=t.contents, fallback=t.fallback or "", parameters=sent)
            for t in targets]


# -- botocore's models -----------------------------------------------------------------------------
@cache
def _loader() -> Any:
    import botocore.loaders

    return botocore.loaders.Loader()


@cache
def service_model(service: str) -> Any:
    """botocore's model of ``service`` (its service name), None when there is no such service."""
    import botocore.exceptions
    import botocore.model

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", service):
        return None
    try:
        return botocore.model.ServiceModel(_loader().load_service_model(service, "service-2"), service)
    except botocore.exceptions.DataNotFoundError:
        return None


@cache
def operations_of(service: str) -> dict[str, str]:
    """CLI command -> operation name of one service (``delete-db-instance`` -> ``DeleteDBInstance``)."""
    import botocore

    model = service_model(service)
    if model is None:
        return {}
    names = {botocore.xform_name(name, "-"): name for name in model.operation_names}
    return names | {name.lower(): name for name in model.operation_names if name.lower() not in names}


def operation_of(service: str, cli_operation: str) -> str | None:
    """The botocore operation a CLI command names; CLI versions split some names differently
    (``get-o-tel-enrichment``), so the same letters name the same operation."""
    operations = operations_of(service)
    return operations.get(cli_operation) or operations.get(cli_operation.replace("-", "").lower())


def _botocore_version() -> str:
    import botocore

    return str(botocore.__version__)


# -- the CLI's own commands ------------------------------------------------------------------------
def _s3(command: _Command, sub: str, args: list[str]) -> list[Call]:
    """``aws s3 ls|cp|mv|rm|sync|mb|rb|presign|website``: the calls that change something."""
    paths, flags = _s3_words(sub, args)
    expected = {"ls": (0, 1), "presign": (1, 1), "rm": (1, 1), "rb": (1, 1), "mb": (1, 1), "website": (1, 1),
                "cp": (2, 2), "mv": (2, 2), "sync": (2, 2)}
    if sub not in expected:
        raise CannotRead(f"aws s3 has no command {sub!r}; use aws s3api for the S3 API")
    low, high = expected[sub]
    if not low <= len(paths) <= high:
        raise CannotRead(f"aws s3 {sub} takes {low if low == high else f'{low} or {high}'} path(s), not "
                         f"{len(paths)}")
    if sub in ("ls", "presign") or "dryrun" in flags:
        return []  # lists, signs a GET, or only shows what it would do
    recursive = "recursive" in flags
    source, destination = (paths[0], paths[-1]) if len(paths) == 2 else (paths[0], "")
    calls: list[Call] = []
    if sub == "rb":
        calls.append(("s3", "DeleteBucket", _s3_location(source, need_key=False)))
        if "force" in flags:
            calls.append(("s3", "DeleteObjects", _s3_location(source, need_key=False)))
    elif sub == "rm":
        calls.append(_s3_delete(source, recursive))
    elif sub == "mb":
        calls.append(("s3", "CreateBucket", _s3_location(source, need_key=False)))
    elif sub == "website":
        calls.append(("s3", "PutBucketWebsite", _s3_location(source, need_key=False)))
    else:  # cp, mv, sync
        if sub == "mv" and source.startswith("s3://"):
            calls.append(_s3_delete(source, recursive))
        if destination.startswith("s3://"):
            calls.append(("s3", "PutObject", _s3_location(destination, need_key=False)))
            if sub == "sync" and "delete" in flags:
                calls.append(_s3_delete(destination, recursive=True))
    return calls


def _s3_words(sub: str, args: list[str]) -> tuple[list[str], set[str]]:
    paths: list[str] = []
    flags: set[str] = set()
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not is_known(word):
            raise CannotRead(f"aws s3 {sub} is given {shown(word)}, which is computed when the command runs; write "
                             "it out")
        if not word.startswith("--"):
            paths.append(word)
            continue
        name, eq, _ = word[2:].partition("=")
        if name == "sse" and not eq and i < len(args) and args[i] in _SSE_CHOICES:
            i += 1
        elif name in S3_FLAGS:
            flags.add(name)
        elif name in S3_VALUES:
            if not eq:
                while i < len(args) and not args[i].startswith("--"):
                    i += 1
                    if name != "grants":
                        break
        else:
            raise CannotRead(f"--{name} is not an option of aws s3 {sub}; check the spelling (aws s3 {sub} help)")
    return paths, flags


def _s3_location(path: str, *, need_key: bool) -> dict[str, Any]:
    if not path.startswith("s3://"):
        raise CannotRead(f"{path!r} is not an s3:// path")
    rest = path[len("s3://"):]
    arn = _S3_ARN_BUCKET.match(rest)
    bucket, _, key = (arn[1], "/", arn[2] or "") if arn else rest.partition("/")
    if not bucket:
        raise CannotRead(f"{path!r} names no bucket")
    return {"Bucket": bucket, "Key": key} if need_key or key else {"Bucket": bucket}


def _s3_delete(path: str, recursive: bool) -> Call:
    location = _s3_location(path, need_key=False)
    if recursive or "Key" not in location:
        return "s3", "DeleteObjects", {"Bucket": location["Bucket"]}
    return "s3", "DeleteObject", location


def _ddb(command: _Command, sub: str, args: list[str]) -> list[Call] | None:
    """``aws ddb put TABLE ITEMS`` (CLI v2): a PutItem on the table; ``aws ddb select`` reads."""
    if sub != "put":
        return [] if sub == "select" else None
    positionals = [a for a in args if not a.startswith("--")]
    if not positionals or not is_known(positionals[0]):
        raise CannotRead("aws ddb put needs the table name written out")
    return [("dynamodb", "PutItem", {"TableName": positionals[0]})]


def _picked(args: list[str], flags: dict[str, tuple[str, bool]]) -> dict[str, Any]:
    """The parameters a customization names, by its flags (its other options are its own)."""
    params: dict[str, Any] = {}
    for i, word in enumerate(args):
        name, eq, attached = word[2:].partition("=") if word.startswith("--") else ("", "", "")
        if name not in flags:
            continue
        member, several = flags[name]
        values = [attached] if eq else []
        for later in args[i + 1:]:
            if eq or later.startswith("--") or (values and not several):
                break
            values.append(later)
        if not values or not all(is_known(v) for v in values):
            raise CannotRead(f"the value of --{name} is missing or computed when the command runs; write it out")
        params[member] = values if several else values[0]
    return params


def _rds(command: _Command, sub: str, args: list[str]) -> list[Call] | None:
    """``aws rds generate-db-auth-token --hostname H``: signs a token to log in to that database (rds-db:connect),
    which is what the SQL it then runs acts on. Any other rds command is an API call."""
    if sub != "generate-db-auth-token":
        return None
    picked = _picked(args, {"hostname": ("hostname", False)})
    host = str(picked.get("hostname", ""))
    match = _RDS_HOST.match(host)
    if match is None:
        raise CannotRead(f"envlabel cannot tell which database the hostname {host!r} is (expected an RDS "
                         "endpoint: NAME.ID.REGION.rds.amazonaws.com)")
    name, cluster, region = match.groups()
    kind = "cluster" if cluster else "db"
    target = f"arn:aws:rds:{region}:{command.account()}:{kind}:{name}"
    return [("rds-db", "connect", {"targets": [target]})]


_SPECIAL: dict[str, Callable[[_Command, str, list[str]], list[Call] | None]] = {"s3": _s3, "ddb": _ddb, "rds": _rds}

