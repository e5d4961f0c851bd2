"""Terraform and OpenTofu plans read into the operations they would perform (``envlabel check-plan``). Pure.

    plan = load_plan(Path("plan.json").read_bytes(), "plan.json")     # terraform show -json PLAN > plan.json
    for change in read_plan(plan, cluster="prod-eu").changes:
        change.address, change.effect, change.operation   # module.db.aws_db_instance.this, delete, Operation(...)

The input is the documented machine-readable plan (``terraform show -json PLAN``, ``tofu show -json PLAN``;
``format_version`` 1.x). Every ``resource_changes`` entry of a managed resource is read by its actions:

- ``["delete"]`` and the replacements ``["delete", "create"]`` / ``["create", "delete"]`` delete what exists;
  ``["update"]`` modifies it; both are decided against the resource itself (its ``before`` values);
- ``["create"]`` is decided against the container the new resource is made in (its ``after`` values);
- ``no-op``, ``read`` and ``forget`` (dropped from the state, left in place) change nothing and are skipped,
  as are data sources and the resources of providers that keep nothing outside the state (random, null,
  time, tls, local...): unless a provisioner runs a command, which is decided as production;
- an action word this module does not know is decided as a delete (fail closed).

Where a resource lives comes from its own attributes first (:mod:`envlabel.commands.terraform_targets`), then
from its provider configuration (:func:`provider_scopes`): ``allowed_account_ids`` or ``assume_role`` and
``region`` for AWS (and the accounts in the ARNs of the other resources it manages), ``project`` for Google,
``config_context``/``host`` for Kubernetes and Helm, mapped onto envlabel's clusters; constants, and root
variables the plan records. A change whose target cannot be named has no operation: it is decided as
production, with the reason why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from envlabel.commands import CommandContext, Operation
from envlabel.commands.terraform_targets import CREATE, DELETE, UPDATE, Scope, Unnamed, operation_of
from envlabel.errors import EnvlabelError

#: the major version of the plan format this module reads
FORMAT_MAJOR = "1"
#: providers whose resources exist only in the state: creating or destroying them touches no infrastructure.
#: By their full source address: another namespace's provider called ``null`` may do anything
STATE_ONLY_PROVIDERS = frozenset(
    {f"{registry}/hashicorp/{name}" for registry in ("registry.terraform.io", "registry.opentofu.org")
     for name in ("random", "null", "time", "tls", "local", "archive", "external", "http", "cloudinit")}
    | {"terraform.io/builtin/terraform"})
_SKIPPED_ACTIONS = frozenset({"no-op", "read", "forget"})
_KNOWN_ACTIONS = _SKIPPED_ACTIONS | {DELETE, UPDATE, CREATE}
_MODULE_STEP = re.compile(r'module\.([A-Za-z0-9_-]+)((?:\[(?:"(?:[^"\\]|\\.)*"|[0-9]+)\])?)(?:\.|$)')
_ARN_ACCOUNT = re.compile(r"^arn:[a-z-]+:[a-z0-9-]+:([a-z0-9-]*):(\d{12}):")
_DEFAULT_PORTS = {"https": 443, "http": 80}


class PlanError(EnvlabelError, ValueError):
    """The file is not a plan this module reads; the message says how to produce one."""


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One change of the plan, ready to be decided."""

    #: the resource's address as Terraform writes it (``module.db.aws_db_instance.this``, ``aws_s3_bucket.b["logs"]``)
    address: str
    #: the plan's actions (``["delete", "create"]``)
    actions: tuple[str, ...]
    #: what it does to what exists: delete (a replacement too), update or create
    effect: str
    #: the operation the check decides, or None when no target can be named (then decided as production)
    operation: Operation | None
    #: the action decided: the operation's, or the generic verb of ``effect``
    action: str
    #: how the target was read, or why none could be named and what would name it
    note: str
    #: the provider's short name (``aws``, ``google``, ``kubernetes``...)
    provider: str = ""


@dataclass(slots=True)
class PlanReading:
    changes: list[PlannedChange] = field(default_factory=list)
    #: entries that change no infrastructure (no-op, read, forget, data sources, state-only providers)
    skipped: int = 0
    terraform_version: str = ""


def load_plan(raw: bytes | str, source: str) -> dict[str, Any]:
    """The plan JSON of ``raw`` (read from ``source``, for messages), or :class:`PlanError` saying what to do."""
    convert = "run `terraform show -json PLAN > plan.json` (or `tofu show -json PLAN`) and pass that file"
    if isinstance(raw, bytes) and raw.startswith(b"PK"):
        raise PlanError(f"{source} is a saved binary plan (terraform plan -out); {convert}")
    try:
        plan = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PlanError(f"{source} is not JSON ({exc}); {convert}") from None
    if not isinstance(plan, dict):
        raise PlanError(f"{source} holds a JSON {type(plan).__name__}, not a plan object; {convert}")
    version = plan.get("format_version")
    if not isinstance(version, str) or not version:
        raise PlanError(f"{source} has no format_version: it is not a Terraform or OpenTofu JSON plan; {convert}")
    if version.split(".")[0] != FORMAT_MAJOR:
        raise PlanError(f"{source} has plan format_version {version}; envlabel reads format {FORMAT_MAJOR}.x "
                        "(Terraform >= 0.12 and OpenTofu). Write it with `terraform show -json PLAN` of a "
                        f"Terraform or OpenTofu release that writes format {FORMAT_MAJOR}.x, or upgrade envlabel")
    changes = plan.get("resource_changes")
    if changes is None and "values" in plan and "configuration" not in plan:
        raise PlanError(f"{source} is a state (terraform show -json without a plan), not a plan; first "
                        f"`terraform plan -out PLAN`, then {convert.removeprefix('run ')}")
    if changes is not None and not (isinstance(changes, list) and all(isinstance(c, dict) for c in changes)):
        raise PlanError(f"{source}: resource_changes must be a list of objects; {convert}")
    for index, change in enumerate(changes or ()):
        actions = change.get("change", {}).get("actions") if isinstance(change.get("change"), dict) else None
        if not (isinstance(actions, list) and actions and all(isinstance(a, str) for a in actions)):
            raise PlanError(f"{source}: resource_changes[{index}] ({change.get('address', '?')}) has no list of "
                            f"change.actions; {convert}")
    return plan


def read_plan(plan: Mapping[str, Any], *, cluster: str | None = None,
              context: CommandContext | None = None) -> PlanReading:
    """Every change of a plan :func:`load_plan` accepted, with its operation (or why it has none).

    ``cluster``: the envlabel cluster of Kubernetes and Helm resources whose provider configuration names none
    envlabel knows; ``context``: the environment (``AWS_REGION``, ``KUBE_CTX``...) and envlabel's clusters by
    kubeconfig context and API server."""
    context = context or CommandContext()
    configured = ConfigIndex(plan)
    scopes = provider_scopes(plan, configured, context, cluster)
    reading = PlanReading(terraform_version=str(plan.get("terraform_version", "")))
    for entry in plan.get("resource_changes") or ():
        change = entry["change"]
        actions = tuple(change["actions"])
        effect, unknown = effect_of(actions)
        provider = short_provider(entry.get("provider_name", ""))
        config = configured.resource(entry)
        if entry.get("mode") == "data" or effect is None:
            reading.skipped += 1
            continue
        address = str(entry.get("address", "?"))
        if entry.get("deposed"):
            address += f" (deposed object {entry['deposed']})"
        provisioners = [str(p.get("type")) for p in config.get("provisioners") or () if isinstance(p, Mapping)]
        runs = bool(provisioners) and effect in (CREATE, DELETE)  # provisioners run on create (or destroy)
        if runs:
            # a provisioner runs a command line envlabel does not read: whatever it does, fail closed
            reading.changes.append(PlannedChange(
                address, actions, effect, None, effect,
                f"it runs provisioner {', '.join(provisioners)}, whose command envlabel does not read: decided as "
                "production; check the command itself with `envlabel check-command`", provider))
        if str(entry.get("provider_name", "")).lower() in STATE_ONLY_PROVIDERS:
            reading.skipped += 0 if runs else 1
            continue
        values = change.get("after") if effect == CREATE else change.get("before") or change.get("after")
        scope = scopes.get(configured.provider_key(entry, config), Scope(name=provider))
        reading.changes.append(planned(entry, scope, mapping(values), address=address, actions=actions,
                                       effect=effect, unknown=unknown, provider=provider))
    return reading


def planned(entry: Mapping[str, Any], scope: Scope, values: Mapping[str, Any], *, address: str,
            actions: tuple[str, ...], effect: str, unknown: str, provider: str) -> PlannedChange:
    """One change with its operation, or with none and the reason (decided as production)."""
    try:
        operation = operation_of(provider, str(entry.get("type", "")), effect, values, scope)
    except Unnamed as why:
        return PlannedChange(address, actions, effect, None, effect,
                             f"{unknown}no target can be named: {why}; decided as production", provider)
    operation = Operation(operation.tool, operation.target, operation.action, operation.contents, address,
                          unknown + operation.note)
    return PlannedChange(address, actions, effect, operation, operation.action, operation.note, provider)


def effect_of(actions: tuple[str, ...]) -> tuple[str | None, str]:
    """(delete | update | create, or None when nothing changes; a note when an action word is unknown)."""
    words = set(actions)
    strange = sorted(words - _KNOWN_ACTIONS)
    if strange:  # a newer Terraform's action word: decided as a delete, the strictest
        return DELETE, f"plan action {', '.join(strange)} is not one envlabel knows, so it is decided as a delete; "
    for effect in (DELETE, UPDATE, CREATE):
        if effect in words:
            return effect, ""
    return None, ""


def short_provider(provider_name: str) -> str:
    """``registry.terraform.io/hashicorp/aws`` -> ``aws`` (the type's own prefix for the builtin provider)."""
    return provider_name.rstrip("/").rpartition("/")[2]


# -- the configuration: which provider configuration each resource uses --------------------------------
class ConfigIndex:
    """The plan's ``configuration``: resources by (module path, mode, type, name), and provider configs."""

    def __init__(self, plan: Mapping[str, Any]) -> None:
        configuration = mapping(plan.get("configuration"))
        providers = mapping(configuration.get("provider_config"))
        self.providers: dict[str, Mapping[str, Any]] = {str(k): v for k, v in providers.items()
                                                         if isinstance(v, Mapping)}
        self.resources: dict[tuple[tuple[str, ...], str, str, str], Mapping[str, Any]] = {}
        root = configuration.get("root_module")
        if isinstance(root, Mapping):
            self._index((), root)

    def _index(self, path: tuple[str, ...], module: Mapping[str, Any]) -> None:
        for resource in module.get("resources") or ():
            if isinstance(resource, Mapping):
                key = (path, str(resource.get("mode")), str(resource.get("type")), str(resource.get("name")))
                self.resources[key] = resource
        calls = module.get("module_calls")
        for name, call in (calls.items() if isinstance(calls, Mapping) else ()):
            if isinstance(call, Mapping) and isinstance(call.get("module"), Mapping):
                self._index((*path, str(name)), call["module"])

    def resource(self, entry: Mapping[str, Any]) -> Mapping[str, Any]:
        """The configuration block of a change's resource ({} when it is no longer configured: an orphan)."""
        key = (module_path(str(entry.get("module_address") or "")), str(entry.get("mode")), str(entry.get("type")),
               str(entry.get("name")))
        return self.resources.get(key, {})

    def provider_key(self, entry: Mapping[str, Any], config: Mapping[str, Any]) -> str:
        """The provider configuration a resource uses. An orphan (being destroyed, no longer configured) uses
        the only configuration of its provider; with several, which one is not in the plan: none."""
        key = config.get("provider_config_key")
        if isinstance(key, str) and key:
            return key
        full, short = str(entry.get("provider_name", "")), short_provider(str(entry.get("provider_name", "")))
        candidates = [k for k, p in self.providers.items() if p.get("full_name") == full or
                      (not p.get("full_name") and p.get("name") == short)]
        if len(candidates) == 1:
            return candidates[0]
        return short if not candidates else f"(one of {', '.join(sorted(candidates))})"


def module_path(module_address: str) -> tuple[str, ...]:
    """``module.a["k"].module.b[0]`` -> ``("a", "b")``: the module calls, instance keys dropped."""
    path: list[str] = []
    position = 0
    while position < len(module_address):
        step = _MODULE_STEP.match(module_address, position)
        if step is None:
            return (*path, f"?{module_address[position:]}")  # nothing the configuration holds
        path.append(step[1])
        position = step.end()
    return tuple(path)


# -- provider configurations: where their resources live ----------------------------------------------
def provider_scopes(plan: Mapping[str, Any], configured: ConfigIndex, context: CommandContext,
                    cluster: str | None) -> dict[str, Scope]:
    """A :class:`Scope` per provider configuration key (and per provider with no configuration block)."""
    variables = mapping(plan.get("variables"))
    scopes: dict[str, Scope] = {}
    learned = learned_accounts(plan, configured)
    keys = set(configured.providers) | set(learned)
    for entry in plan.get("resource_changes") or ():
        keys.add(configured.provider_key(entry, configured.resource(entry)))
    for key in keys:
        provider = configured.providers.get(key, {})
        short = str(provider.get("name") or key.rpartition(":")[2].partition(".")[0])
        at_root = not provider.get("module_address")
        expressions = mapping(provider.get("expressions"))
        scope = Scope(name=key)
        if key.startswith("(one of"):
            scope.account_problem = scope.cluster_problem = (
                f"it is no longer configured and its provider has several configurations {key[8:-1]}; which one "
                "manages it is not in the plan")
        else:
            resolve = Resolver(expressions, variables if at_root else {})
            if short == "aws":
                aws_scope(scope, resolve, context, learned.get(key, {}))
            elif short in ("google", "google-beta"):
                scope.project = resolve.text("project", environ=(
                    context, "GOOGLE_PROJECT", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"))
            elif short in ("kubernetes", "kubectl", "helm"):
                nested = resolve.block("kubernetes") if short == "helm" else resolve
                kubernetes_scope(scope, nested, context, cluster)
        scopes[key] = scope
    return scopes


def aws_scope(scope: Scope, resolve: Resolver, context: CommandContext, learned: Mapping[str, str]) -> None:
    """Account and region of an AWS provider configuration: declared (``allowed_account_ids`` with one id,
    ``assume_role.role_arn``), else learned from its resources' ARNs; several disagreeing: none."""
    scope.region = resolve.text("region", environ=(context, "AWS_REGION", "AWS_DEFAULT_REGION"))
    declared: dict[str, str] = {}
    allowed = resolve.value("allowed_account_ids")
    if isinstance(allowed, list) and len(allowed) == 1 and isinstance(allowed[0], str):
        declared[allowed[0]] = f"allowed_account_ids of provider configuration {scope.name}"
    role = _ARN_ACCOUNT.match(resolve.block("assume_role").text("role_arn") or "")
    if role:
        declared.setdefault(role[2], f"assume_role of provider configuration {scope.name}")
    found = declared or dict(learned)
    accounts = set(declared) | set(learned)
    if len(accounts) == 1:
        scope.account = next(iter(accounts))
        scope.account_from = found[scope.account]
    elif accounts:
        scope.account_problem = (f"the resources of provider configuration {scope.name} are in several accounts "
                                 f"({', '.join(sorted(accounts))})")


def kubernetes_scope(scope: Scope, resolve: Resolver, context: CommandContext, cluster: str | None) -> None:
    """The envlabel cluster a Kubernetes or Helm provider talks to: its ``config_context`` or ``host`` as
    envlabel's sources name them, else ``--cluster``."""
    # constants only: a context read off a variable it merely interpolates could be another cluster's
    kube_context = resolve.text("config_context", variables=False, environ=(context, "KUBE_CTX"))
    host = resolve.text("host", variables=False, environ=(context, "KUBE_HOST"))
    servers = {normal_server(url): name for url, name in context.clusters_by_server.items()}
    if kube_context and kube_context in context.clusters_by_context:
        scope.cluster = context.clusters_by_context[kube_context]
        scope.cluster_from = f"kubeconfig context {kube_context} of provider configuration {scope.name}"
    elif host and normal_server(host) in servers:
        scope.cluster = servers[normal_server(host)]
        scope.cluster_from = f"API server {host} of provider configuration {scope.name}"
    elif cluster:
        scope.cluster, scope.cluster_from = cluster, "--cluster"
    else:
        named = " and ".join(f"{what} {value}" for what, value in (("config_context", kube_context),
                                                                   ("host", host)) if value)
        scope.cluster_problem = (f"provider configuration {scope.name} names {named or 'no context or host'}, which "
                                 "no kubernetes source of the envlabel config has; pass --cluster NAME (the "
                                 "envlabel cluster it talks to)")


def learned_accounts(plan: Mapping[str, Any], configured: ConfigIndex) -> dict[str, dict[str, str]]:
    """Per provider configuration key, the accounts its resources are in (their own ``arn``), and any
    ``aws_caller_identity`` data source the plan read, each with where it was seen."""
    learned: dict[str, dict[str, str]] = {}
    for entry in plan.get("resource_changes") or ():
        if short_provider(str(entry.get("provider_name", ""))) != "aws":
            continue
        key = configured.provider_key(entry, configured.resource(entry))
        for values in (entry["change"].get("before"), entry["change"].get("after")):
            match = _ARN_ACCOUNT.match(str(values.get("arn") or "")) if isinstance(values, Mapping) else None
            if match:
                learned.setdefault(key, {}).setdefault(match[2], f"the ARN of {entry.get('address')}")
    for module_address, resource in state_resources(plan.get("prior_state")):
        values = resource.get("values")
        if resource.get("type") == "aws_caller_identity" and isinstance(values, Mapping):
            account = str(values.get("account_id") or "")
            entry = {"module_address": module_address, **resource}
            if re.fullmatch(r"\d{12}", account):
                key = configured.provider_key(entry, configured.resource(entry))
                learned.setdefault(key, {}).setdefault(account, f"data source {resource.get('address')}")
    return learned


def state_resources(state: object) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(module address, resource) of every resource a state representation (``prior_state``) holds."""
    values = state.get("values") if isinstance(state, Mapping) else None
    modules = [values.get("root_module")] if isinstance(values, Mapping) else []
    while modules:
        module = modules.pop()
        if not isinstance(module, Mapping):
            continue
        for resource in module.get("resources") or ():
            if isinstance(resource, Mapping):
                yield str(module.get("address") or ""), resource
        modules.extend(module.get("child_modules") or ())


class Resolver:
    """The values of a block-expressions representation: constants, and ``var.X`` of the root module."""

    def __init__(self, expressions: Mapping[str, Any], variables: Mapping[str, Any]) -> None:
        self.expressions, self.variables = expressions, variables

    def value(self, name: str, *, variables: bool = True) -> Any:
        """The constant, or the value of the one root variable the expression references (``var.region``).
        References do not tell ``"${var.env}-x"`` from ``var.env``: ``variables=False`` where reading one as
        the other could name a less strict target (a cluster)."""
        expression = self.expressions.get(name)
        if not isinstance(expression, Mapping):
            return None
        if "constant_value" in expression:
            return expression["constant_value"]
        references = expression.get("references")
        if (variables and isinstance(references, list) and len(references) == 1
                and str(references[0]).startswith("var.")):
            variable = self.variables.get(str(references[0]).removeprefix("var."))
            return variable.get("value") if isinstance(variable, Mapping) else None
        return None

    def text(self, name: str, *, variables: bool = True,
             environ: tuple[CommandContext, *tuple[str, ...]] | None = None) -> str | None:
        """A string setting; ``environ``: the context and the variables the provider reads when the block does
        not set it at all (set to something unreadable, they are not read: they are not what it uses)."""
        if name not in self.expressions and environ is not None:
            context, *names = environ
            return next((context.environ[n] for n in names if context.environ.get(n)), None)
        value = self.value(name, variables=variables)
        return value if isinstance(value, str) and value else None

    def block(self, name: str) -> Resolver:
        """A nested block (written as a list of one block, or as one)."""
        nested = self.expressions.get(name)
        if isinstance(nested, list):
            nested = nested[0] if nested else {}
        return Resolver(mapping(nested), self.variables)


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (a plan written by hand may hold anything)."""
    return value if isinstance(value, Mapping) else {}


def normal_server(url: str) -> str:
    """``https://api.example:443/`` and ``https://api.example`` are one server: scheme://host:port."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 443)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"

