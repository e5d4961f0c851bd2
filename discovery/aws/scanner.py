"""The AWS scanner: the organization tree, then every account x region, in a bounded thread pool.

The caller's own account (from sts:GetCallerIdentity; the management or a
delegated-administrator account) is scanned with the scanner's own
credentials; every other account through the configured role. Each unit of
work, a *scope* (``organization``, ``ACCOUNT/REGION``, ``ACCOUNT/global``),
succeeds whole or becomes a ScanError with a hint; the others still return.
Sessions are not thread-safe, so each unit gets its own from the factory.

Recovery facts EC2 has no batch call for (termination protection: one
DescribeInstanceAttribute per instance) are left by a region's unit as
follow-up tasks on the same pool, in batches, so they run alongside the other
scopes instead of serially inside one; their failures only mark facts unreadable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial

from envlabel.config import AwsSource
from envlabel.discovery.aws.calls import Clients, Credentials, ScopeFailed, SessionFactory, make_sessions
from envlabel.discovery.aws.facts import Facts, termination_protection, with_facts
from envlabel.discovery.aws.organization import SCOPE as ORG_SCOPE
from envlabel.discovery.aws.organization import walk_organization
from envlabel.discovery.aws.records import PROVIDER, partition_of
from envlabel.discovery.aws.services import Where, scan_buckets, scan_region
from envlabel.model import Resource, ScanError, ScanResult

PERMISSIONS = (
    "sts:GetCallerIdentity",
    "sts:AssumeRole",
)

#: instances per termination-protection task: a region's 200 instances spread over 8 tasks of the pool
PROTECTION_BATCH = 25

_ORG_HINTS = {
    "AWSOrganizationsNotInUseException": "this account is not in an organization; set organization: false",
    "AccessDeniedException": ("run the scanner in the management account or a delegated administrator "
                              "for AWS Organizations, or set organization: false"),
}


def global_region(regions: Iterable[str]) -> str:
    """Where a partition's global services (Organizations, IAM, S3 listing) answer."""
    first = next(iter(regions), "us-east-1")
    for prefix, region in (("cn-", "cn-north-1"), ("us-gov-", "us-gov-west-1")):
        if first.startswith(prefix):
            return region
    return "us-east-1"


@dataclass
class Outcome:
    scope: str
    resources: list[Resource] = field(default_factory=list)
    errors: list[ScanError] = field(default_factory=list)
    #: fact reads left to pool tasks of their own; each returns resource id -> facts to merge
    followups: list[Callable[[], dict[str, Facts]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Access:
    """How to reach one account: its credentials (None: the scanner's own) and who they are, for hints."""

    account: str
    credentials: Credentials | None
    principal: str


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the scanner is: its account, partition and ARN (for hints)."""

    account: str
    partition: str
    arn: str

    @property
    def principal(self) -> str:
        return f"the scanner's credentials ({self.arn})"


class AwsScanner:
    """``AwsScanner(source).scan() -> ScanResult``; inject ``session_factory`` to observe or redirect calls."""

    def __init__(self, source: AwsSource, session_factory: SessionFactory | None = None, max_workers: int = 8,
                 retries: int = 8) -> None:
        self.source = source
        self.session_factory: SessionFactory = session_factory or make_sessions(source.profile)
        self.max_workers = max_workers
        self.retries = retries
        self.global_region = global_region(source.regions)

    def clients(self, credentials: Credentials | None, region: str, principal: str) -> Clients:
        return Clients(self.session_factory(credentials), region, self.source.endpoint_url, self.retries,
                       principal)

    def scan(self) -> ScanResult:
        try:
            identity = self.clients(None, self.global_region, "the scanner's credentials").api("sts").call(
                "GetCallerIdentity")
        except ScopeFailed as failure:
            return ScanResult(self.source.name, [], [ScanError(
                "credentials", failure.message,
                "configure AWS credentials for the scanner (profile, environment or instance role)")])
        caller = Caller(identity["Account"], partition_of(identity["Arn"]), identity["Arn"])
        outcomes: dict[str, Outcome] = {}
        order: list[str] = []
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="envlabel-aws") as pool:
            pending = self.submit_account(pool, caller, Access(caller.account, None, caller.principal), order)
            if self.source.organization:
                org, members = self.scan_organization(caller)
                outcomes[ORG_SCOPE] = org
                order.insert(0, ORG_SCOPE)
            else:
                outcomes[caller.account] = Outcome(caller.account, [self.own_account(caller)])
                order.insert(0, caller.account)
                members = []
            assumed = {pool.submit(self.assume, caller, account): account for account in members}
            for future in as_completed(assumed):
                account = assumed[future]
                credentials_or_failure = future.result()
                if isinstance(credentials_or_failure, Outcome):
                    outcomes[account] = credentials_or_failure
                    order.append(account)
                    continue
                pending += self.submit_account(pool, caller, credentials_or_failure, order)
            followups: list[tuple[str, Future[dict[str, Facts]]]] = []
            for scope_future in as_completed(pending):
                outcome = scope_future.result()
                outcomes[outcome.scope] = outcome
                followups += [(outcome.scope, pool.submit(job)) for job in outcome.followups]
            for scope, followup in followups:
                outcomes[scope].resources = with_facts(outcomes[scope].resources, followup.result())
        return self.assemble(outcomes, order)

    def assemble(self, outcomes: dict[str, Outcome], order: list[str]) -> ScanResult:
        """One result in a stable order; an id two scopes report (a global ARN) is kept once."""
        resources: list[Resource] = []
        errors: list[ScanError] = []
        seen: set[str] = set()
        scopes: set[str] = set()
        for scope in order:
            outcome = outcomes[scope]
            resources += [r for r in outcome.resources if r.id not in seen]
            seen.update(r.id for r in outcome.resources)
            errors += outcome.errors
            if not outcome.errors:
                scopes.add(scope)
        return ScanResult(self.source.name, resources, errors, frozenset(scopes))

    def submit_account(self, pool: ThreadPoolExecutor, caller: Caller, access: Access,
                       order: list[str]) -> list[Future[Outcome]]:
        regions: list[str | None] = [*self.source.regions, None]
        order += [f"{access.account}/{region or 'global'}" for region in regions]
        return [pool.submit(self.scan_scope, caller, access, region) for region in regions]

    def scan_scope(self, caller: Caller, access: Access, region: str | None) -> Outcome:
        """One account's region (or its global resources when ``region`` is None)."""
        if region is None:
            scope = f"{access.account}/global"
            try:
                s3 = self.clients(access.credentials, self.global_region, access.principal).api("s3")
                buckets, failures = scan_buckets(s3, caller.partition, access.account, self.source.recovery_facts,
                                                 regions=self.source.regions)
            except ScopeFailed as failure:
                return Outcome(scope, errors=[ScanError(scope, failure.message, failure.hint)])
            return Outcome(scope, buckets, [ScanError(scope, f.message, f.hint) for f in failures])
        where = Where(caller.partition, access.account, region, self.source.recovery_facts)
        try:
            clients = self.clients(access.credentials, region, access.principal)
            resources = scan_region(clients, where)
        except ScopeFailed as failure:
            return Outcome(where.scope, errors=[ScanError(where.scope, failure.message, failure.hint)])
        return Outcome(where.scope, resources, followups=self.protection_tasks(access, region, resources))

    def protection_tasks(self, access: Access, region: str,
                         resources: list[Resource]) -> list[Callable[[], dict[str, Facts]]]:
        """Termination protection of the region's instances, ``PROTECTION_BATCH`` to a task."""
        if not self.source.recovery_facts:
            return []
        arns = [r.id for r in resources if r.kind == "ec2:instance"]
        return [partial(self.read_protection, access, region, arns[i:i + PROTECTION_BATCH])
                for i in range(0, len(arns), PROTECTION_BATCH)]

    def read_protection(self, access: Access, region: str, arns: list[str]) -> dict[str, Facts]:
        ec2 = self.clients(access.credentials, region, access.principal).api("ec2")
        return termination_protection(ec2, arns)

    def scan_organization(self, caller: Caller) -> tuple[Outcome, list[str]]:
        """The org tree and the member accounts to scan (active ones other than the caller's)."""
        api = self.clients(None, self.global_region, caller.principal).api("organizations")
        try:
            tree = walk_organization(api, self.source)
        except ScopeFailed as failure:
            hint = _ORG_HINTS.get(failure.code, failure.hint)
            return Outcome(ORG_SCOPE, errors=[ScanError(ORG_SCOPE, failure.message, hint)]), []
        members = [a.id for a in tree.accounts if a.status == "ACTIVE" and a.id != caller.account]
        errors = [ScanError(ORG_SCOPE, f.message, f.hint) for f in tree.failures]
        return Outcome(ORG_SCOPE, tree.resources, errors), members

    def own_account(self, caller: Caller) -> Resource:
        """Without an organization the account is known only by its id (and any configured environment)."""
        return Resource(caller.account, PROVIDER, "aws:account", caller.account, None, {}, caller.account,
                        declared=self.source.account_environments.get(caller.account))

    def role_arn(self, caller: Caller, account: str) -> str:
        role = self.source.assume_role
        if "{account}" in role:
            return role.replace("{account}", account)
        return role if role.startswith("arn:") else f"arn:{caller.partition}:iam::{account}:role/{role}"

    def assume(self, caller: Caller, account: str) -> Access | Outcome:
        """Credentials in ``account`` through the configured role, or the account's failure."""
        role = self.role_arn(caller, account)
        if f":{account}:" not in role:  # one fixed ARN for every account would scan that one account N times
            return Outcome(account, errors=[ScanError(
                account, f"assume_role {self.source.assume_role!r} does not name account {account}",
                "set assume_role to a role name (EnvlabelReadOnly) or an ARN template with {account}: "
                "arn:aws:iam::{account}:role/EnvlabelReadOnly")])
        try:
            response = self.clients(None, self.global_region, caller.principal).api("sts").call(
                "AssumeRole", RoleArn=role, RoleSessionName="envlabel-scan")
        except ScopeFailed as failure:
            return Outcome(account, errors=[ScanError(
                account, f"could not assume {role}: {failure.message}; none of its regions were scanned",
                f"create the role {role} trusting {caller.arn} with discovery/aws/iam-policy.json attached, "
                "or set assume_role to the role that exists")])
        c = response["Credentials"]
        return Access(account, Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]),
                      f"the role {role}")
