"""An AWS CLI operation's arguments read into its API parameters, by the operation's botocore input shape, as
the CLI reads them (``awscli/argprocess.py``, ``awscli/shorthand.py``, ``awscli/paramfile.py``).

    params_of(model, ["--db-instance-identifier", "orders", "--skip-final-snapshot"], cwd=".")
    # {"DBInstanceIdentifier": "orders", "SkipFinalSnapshot": True}

Each member ``DBInstanceIdentifier`` is the flag ``--db-instance-identifier`` (botocore's ``xform_name``, as the
CLI derives it, with the CLI's few renames); a boolean is ``--flag``/``--no-flag``; a list takes every word up
to the next flag (``--instance-ids i-1 i-2``), or one JSON list; a structure or map takes JSON or the CLI's
shorthand (``Key=Name,Value=web``, ``[a,b]``, ``{k=v}``); ``file://PATH`` is read (relative to the command's
directory), ``fileb://`` is binary and names nothing. ``--cli-input-json``/``--cli-input-yaml`` give the
parameters as a document; the command line's own flags win over it. A flag argparse would take as an
abbreviation of exactly one flag is read as that flag. Anything else the CLI would refuse, or envlabel cannot
read, raises :class:`CannotRead` with the reason.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from envlabel.commands import is_known, shown

#: flags every operation takes besides its members (pagination, skeletons, input documents)
PAGING = frozenset({"starting-token", "page-size", "max-items"})
#: the CLI's renames of a member's flag: (service, operation or "*", flag) -> the flag it is given as
RENAMES = {
    ("ec2", "create-image", "no-no-reboot"): "reboot", ("ec2", "*", "no-egress"): "ingress",
    ("ec2", "*", "no-disable-api-termination"): "enable-api-termination",
    ("opsworks", "*", "region"): "stack-region", ("elastictranscoder", "*", "output"): "job-output",
    ("datapipeline", "*", "query"): "objects-query", ("emr", "*", "job-flow-ids"): "cluster-ids",
    ("emr", "*", "job-flow-id"): "cluster-id", ("sns", "subscribe", "endpoint"): "notification-endpoint",
    ("codedeploy", "*", "s-3-location"): "s3-location", ("codedeploy", "*", "ec-2-tag-filters"): "ec2-tag-filters",
    ("eks", "create-cluster", "version"): "kubernetes-version",
    ("eks", "update-cluster-version", "version"): "kubernetes-version",
    ("eks", "create-nodegroup", "version"): "kubernetes-version",
    ("eks", "update-nodegroup-version", "version"): "kubernetes-version",
    ("route53", "delete-traffic-policy", "version"): "traffic-policy-version",
    ("route53", "update-traffic-policy-comment", "version"): "traffic-policy-version",
    ("codepipeline", "delete-custom-action-type", "version"): "action-version",
    ("codepipeline", "create-custom-action-type", "version"): "action-version",
    ("apigateway", "create-rest-api", "version"): "api-version",
    ("apigatewayv2", "create-api", "version"): "api-version", ("apigatewayv2", "update-api", "version"): "api-version",
    ("gamelift", "create-build", "version"): "build-version", ("gamelift", "update-build", "version"): "build-version",
    ("gamelift", "create-script", "version"): "script-version",
    ("gamelift", "update-script", "version"): "script-version",
    ("lex-models", "delete-bot", "version"): "bot-version",
    ("lex-models", "delete-intent", "version"): "intent-version",
    ("lex-models", "delete-slot-type", "version"): "slot-type-version",
    ("lex-models", "delete-bot-version", "version"): "bot-version",
    ("lex-models", "delete-intent-version", "version"): "intent-version",
    ("lex-models", "delete-slot-type-version", "version"): "slot-type-version",
    ("schemas", "*", "version"): "schema-version", ("stepfunctions", "send-task-success", "output"): "task-output",
    ("kinesisanalytics", "add-application-output", "output"): "application-output",
    ("kinesisanalyticsv2", "add-application-output", "output"): "application-output",
    ("rekognition", "create-stream-processor", "output"): "stream-processor-output",
    ("clouddirectory", "publish-schema", "version"): "schema-version",
    ("ecs", "*", "no-enable-execute-command"): "disable-execute-command",
    ("controltower", "create-landing-zone", "version"): "landing-zone-version",
    ("controltower", "update-landing-zone", "version"): "landing-zone-version",
    ("glue", "get-unfiltered-partition-metadata", "region"): "resource-region",
    ("glue", "get-unfiltered-partitions-metadata", "region"): "resource-region",
    ("glue", "get-unfiltered-table-metadata", "region"): "resource-region",
    ("license-manager", "delete-grant", "version"): "grant-version",
    **{("pinpoint", f"{verb}-{kind}-template", "version"): "template-version"
       for verb in ("delete", "update") for kind in ("email", "in-app", "push", "sms", "voice")},
    ("sagemaker", "delete-image-version", "version"): "version-number",
    ("sagemaker", "update-image-version", "version"): "version-number",
    ("ses", "send-email", "source"): "from",
    ("swf", "register-activity-type", "version"): "activity-version",
    ("swf", "register-workflow-type", "version"): "workflow-version",
    ("workdocs", "create-notification-subscription", "endpoint"): "notification-endpoint",
    ("iotwireless", "*", "lo-ra-wan"): "lorawan",
}
#: the CLI's second names for a flag: (service, operation, flag) -> the other name it also accepts
HIDDEN_ALIASES = {
    ("lambda", "publish-version", "code-sha256"): "code-sha-256",
    ("iam", "enable-mfa-device", "authentication-code1"): "authentication-code-1",
    ("iam", "enable-mfa-device", "authentication-code2"): "authentication-code-2",
    ("iam", "resync-mfa-device", "authentication-code1"): "authentication-code-1",
    ("iam", "resync-mfa-device", "authentication-code2"): "authentication-code-2",
    ("codedeploy", "create-deployment-group", "ec2-tag-set"): "ec-2-tag-set",
    ("codedeploy", "update-deployment-group", "ec2-tag-set"): "ec-2-tag-set",
    ("codedeploy", "list-application-revisions", "s3-bucket"): "s-3-bucket",
    ("codedeploy", "list-application-revisions", "s3-key-prefix"): "s-3-key-prefix",
    ("lightsail", "import-key-pair", "public-key-base64"): "public-key-base-64",
    ("cognito-identity", "create-identity-pool", "open-id-connect-provider-arns"): "open-id-connect-provider-ar-ns",
    ("storagegateway", "describe-tapes", "tape-arns"): "tape-ar-ns",
}
#: flags the CLI adds to one operation, with whether each takes a value ("list": several)
EXTRA_FLAGS: dict[tuple[str, str], dict[str, str]] = {
    ("ec2", "RunInstances"): {"count": "value", "secondary-private-ip-addresses": "list",
                              "secondary-private-ip-address-count": "value", "associate-public-ip-address": "flag",
                              "no-associate-public-ip-address": "flag"},
}
_SCALARS = frozenset({"string", "integer", "long", "float", "double", "boolean", "timestamp", "blob"})


class CannotRead(Exception):  # an answer, worded for the person reading the decision
    """What in the command could not be read; the message says what and how to fix it."""


def params_of(model: Any, args: Sequence[str], *, service: str, cli_operation: str, cwd: str,
              streaming_output: bool = False) -> dict[str, Any]:
    """The API parameters of ``args`` (the words after ``aws SERVICE OPERATION``, global options removed)."""
    flags = flag_table(model, service, cli_operation)
    extra = EXTRA_FLAGS.get((service, model.name), {})
    params: dict[str, Any] = {}
    document: dict[str, Any] = {}
    positionals: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if not word.startswith("--"):
            positionals.append(word)
            continue
        name, eq, attached = word[2:].partition("=")
        values: list[str] = [attached] if eq else []
        if name in ("cli-input-json", "cli-input-yaml"):
            raw = attached if eq else _next(args, i, word)
            i += 0 if eq else 1
            document = _input_document(raw, name, cwd)
            continue
        if name in PAGING or name in extra:
            kind = extra.get(name, "value")
            if kind != "flag" and not eq:
                taken = _take(args, i, several=kind == "list")
                i += len(taken)
            continue
        entry = flag_of(flags, name)
        if entry is None:
            raise CannotRead(f"--{name} is not a parameter of aws {service} {cli_operation}; check the spelling "
                             f"(aws {service} {cli_operation} help)")
        member, shape, value = entry
        if is_boolean(shape):
            value = value if not eq else attached.lower() != "false"
            params[member] = value if shape.type_name == "boolean" else {"Value": value}
            continue
        if not eq:
            values = _take(args, i, several=shape.type_name == "list")
            i += len(values)
        if not values:
            raise CannotRead(f"--{name} needs a value")
        params[member] = _value(shape, values, f"--{name}", cwd)
    if len(positionals) > (1 if streaming_output else 0):
        extra_words = " ".join(shown(p) for p in positionals[1 if streaming_output else 0:])
        raise CannotRead(f"aws {service} {cli_operation} takes no argument {extra_words!r}; pass parameters as "
                         "--flag value")
    return {**document, **params}


@cache
def flag_table(model: Any, service: str, cli_operation: str) -> dict[str, tuple[str, Any, bool]]:
    """``flag`` (without ``--``) -> (member, shape, the value a boolean flag sets) for one operation."""
    import botocore

    table: dict[str, tuple[str, Any, bool]] = {}
    shape = model.input_shape
    members = shape.members if shape is not None else {}
    for member, member_shape in members.items():
        flag = botocore.xform_name(member, "-")
        flag = RENAMES.get((service, cli_operation, flag)) or RENAMES.get((service, "*", flag)) or flag
        table[flag] = (member, member_shape, True)
        alias = HIDDEN_ALIASES.get((service, cli_operation, flag))
        if alias:
            table[alias] = table[flag]
        if is_boolean(member_shape):
            negative = f"no-{flag}"
            # the CLI renames the negative flag of a boolean; that of a {"Value": boolean} is added after renaming
            renamed = (RENAMES.get((service, cli_operation, negative)) or RENAMES.get((service, "*", negative))) \
                if member_shape.type_name == "boolean" else None
            table.setdefault(renamed or negative, (member, member_shape, False))
    return table


def is_boolean(shape: Any) -> bool:
    """A boolean member, or EC2's ``{"Value": boolean}`` structure the CLI also gives as ``--x``/``--no-x``."""
    if shape.type_name == "boolean":
        return True
    members = getattr(shape, "members", {}) if shape.type_name == "structure" else {}
    return list(members) == ["Value"] and bool(members["Value"].type_name == "boolean")


def flag_of(flags: dict[str, tuple[str, Any, bool]], name: str) -> tuple[str, Any, bool] | None:
    """What ``--name`` sets: the flag so named, else one spelt with other hyphens, else the one flag it
    abbreviates."""
    return flags.get(name) or _spelt_otherwise(flags, name) or _abbreviation(flags, name)


def _spelt_otherwise(flags: dict[str, tuple[str, Any, bool]], name: str) -> tuple[str, Any, bool] | None:
    """The flag of the member ``name`` spells with other hyphens: CLI versions split names differently
    (``--preferred-cache-cluster-a-zs`` and ``--preferred-cache-cluster-azs``; ``lo-ra-wan``, ``lorawan``)."""
    squashed = name.replace("-", "")
    matches = {(m, v) for flag, (m, s, v) in flags.items() if flag.replace("-", "") == squashed}
    if len(matches) != 1:
        return None
    member, value = next(iter(matches))
    return next(e for e in flags.values() if e[0] == member and e[2] == value)


def _abbreviation(flags: dict[str, tuple[str, Any, bool]], name: str) -> tuple[str, Any, bool] | None:
    """The one flag ``name`` abbreviates, as argparse accepts (``--db-instance-ident``)."""
    matches = [flag for flag in flags if flag.startswith(name)] if len(name) >= 2 else []
    return flags[matches[0]] if len(matches) == 1 else None


def _next(args: Sequence[str], i: int, flag: str) -> str:
    if i >= len(args):
        raise CannotRead(f"{flag} needs a value")
    return args[i]


def _take(args: Sequence[str], i: int, *, several: bool) -> list[str]:
    """The values after a flag: one, or (a list) every word up to the next ``--flag``."""
    taken: list[str] = []
    while i < len(args) and not args[i].startswith("--"):
        taken.append(args[i])
        i += 1
        if not several:
            break
    return taken


def _value(shape: Any, values: list[str], flag: str, cwd: str) -> Any:
    """One member's value from its words, by its shape."""
    for value in values:
        if not is_known(value):
            raise CannotRead(f"the value of {flag} ({shown(value)}) is computed when the command runs; write it out")
    values = [_param_file(v, flag, cwd, shape) for v in values]
    kind = shape.type_name
    if kind == "list":
        if len(values) == 1 and values[0].lstrip().startswith("["):
            return _json(values[0], flag)
        member = shape.member
        return [_value(member, [v], flag, cwd) for v in values]
    if kind in ("structure", "map"):
        text = values[0]
        return _json(text, flag) if text.lstrip().startswith("{") else _structure(shape, text, flag)
    if kind == "boolean":
        return values[0].lower() != "false"
    return values[0]


def _structure(shape: Any, text: str, flag: str) -> Any:
    # a structure of one string member "Value" takes the bare value (--instance-initiated-shutdown-behavior stop)
    members = getattr(shape, "members", {})
    if list(members) == ["Value"] and "=" not in text:
        return {"Value": text}
    try:
        return Shorthand(text).parse()
    except ValueError as exc:
        raise CannotRead(f"the value of {flag} is neither JSON nor the CLI's shorthand ({exc}); give it as "
                         "JSON") from exc


def _json(text: str, flag: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CannotRead(f"the value of {flag} is not valid JSON ({exc}); fix it") from exc


def _param_file(value: str, flag: str, cwd: str, shape: Any) -> str:
    """A ``file://`` value's contents (as the CLI reads it); a ``fileb://`` blob names nothing."""
    if value.startswith("fileb://"):
        return ""
    if not value.startswith("file://"):
        return value
    path = os.path.join(cwd, os.path.expanduser(value[len("file://"):]))
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(1 << 22)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CannotRead(f"envlabel cannot read {value} given to {flag} ({exc}); it must be a readable text file "
                         "relative to the command's directory") from exc


def _input_document(raw: str, name: str, cwd: str) -> dict[str, Any]:
    if not is_known(raw):
        raise CannotRead(f"the value of --{name} is computed when the command runs; write it out")
    text = _param_file(raw, f"--{name}", cwd, None)
    if name == "cli-input-yaml":
        try:
            import yaml
        except ImportError as exc:
            raise CannotRead("envlabel cannot read --cli-input-yaml here (PyYAML is not installed); use "
                             "--cli-input-json") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise CannotRead(f"the value of --cli-input-yaml is not valid YAML ({exc})") from exc
    else:
        data = _json(text, f"--{name}")
    if not isinstance(data, dict):
        raise CannotRead(f"--{name} must hold an object of parameters")
    return data


class Shorthand:
    """The CLI's shorthand: ``Key=Value,Other=[a,b],Nested={K=V}``; a key's value may run on over commas
    (``Values=a,b,c``), ending at the next ``Key=``. Quotes (``'...'``, ``"..."``) keep commas."""

    _KEY = re.compile(r"\s*([A-Za-z0-9_.#/:@-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def parse(self) -> dict[str, Any]:
        result = self._keyvals(closing="")
        if self.i < len(self.s):
            raise ValueError(f"unexpected {self.s[self.i]!r} at {self.i}")
        return result

    def _keyvals(self, closing: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while True:
            match = self._KEY.match(self.s, self.i)
            if match is None:
                raise ValueError(f"expected Key=Value at {self.i}")
            self.i = match.end()
            result[match[1]] = self._values(closing)
            if self.s.startswith(",", self.i):
                self.i += 1
                continue
            return result

    def _values(self, closing: str) -> Any:
        self._blanks()
        if self.s.startswith("[", self.i):
            return self._list()
        if self.s.startswith("{", self.i):
            self.i += 1
            value = self._keyvals(closing="}")
            self._expect("}")
            return value
        first = self._scalar(closing)
        items = [first]
        while self.s.startswith(",", self.i) and not self._KEY.match(self.s, self.i + 1):
            self.i += 1
            items.append(self._scalar(closing))
        return first if len(items) == 1 else items

    def _list(self) -> list[Any]:
        self.i += 1
        items: list[Any] = []
        self._blanks()
        while not self.s.startswith("]", self.i):
            if self.s.startswith("{", self.i):
                self.i += 1
                items.append(self._keyvals(closing="}"))
                self._expect("}")
            elif self.s.startswith("[", self.i):
                items.append(self._list())
            else:
                items.append(self._scalar("]"))
            self._blanks()
            if self.s.startswith(",", self.i):
                self.i += 1
                self._blanks()
            elif not self.s.startswith("]", self.i):
                raise ValueError(f"expected , or ] at {self.i}")
        self.i += 1
        return items

    def _scalar(self, closing: str) -> str:
        self._blanks()
        if self.i < len(self.s) and self.s[self.i] in "'\"":
            quote = self.s[self.i]
            end = self.s.find(quote, self.i + 1)
            if end < 0:
                raise ValueError("a quote is not closed")
            value = self.s[self.i + 1:end]
            self.i = end + 1
            return value
        stops = "," + closing + ("]" if closing != "]" else "")
        start = self.i
        while self.i < len(self.s) and self.s[self.i] not in stops:
            self.i += 1
        return self.s[start:self.i].strip()

    def _expect(self, char: str) -> None:
        self._blanks()
        if not self.s.startswith(char, self.i):
            raise ValueError(f"expected {char} at {self.i}")
        self.i += 1

    def _blanks(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\n":
            self.i += 1

