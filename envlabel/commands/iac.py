"""Infrastructure-as-code tools whose effect the command line does not show: ``terraform``, ``tofu``,
``terragrunt``, ``pulumi``, ``cdk``, ``eksctl``.

What ``terraform destroy`` or ``pulumi up`` changes is in the state and the code, not in the line, so a command
that may change infrastructure is not understood (decided fail closed: ``require_approval``), with a reason
that says how to have it decided properly: write the plan and check it (``envlabel check-plan``), where every
change is decided against its own target. Commands that only read, plan or format are nothing to check:

- terraform / tofu / terragrunt: ``apply``, ``destroy``, ``import``, ``taint``, ``untaint``, ``state rm|mv|push|
  replace-provider``, ``force-unlock``, ``refresh``, ``workspace delete`` (and terragrunt's ``run-all`` of
  those) change things; ``plan``, ``show``, ``validate``, ``fmt``, ``init``, ``output``, ``providers``,
  ``graph``, ``version``, ``console``, ``state list|show|pull``, ``workspace list|show|select|new`` do not.
  ``apply PLANFILE``: check that plan first (``terraform show -json PLANFILE | envlabel check-plan -``).
- pulumi: ``up``, ``update``, ``destroy``, ``refresh``, ``import``, ``cancel``, ``state delete|unprotect|...``,
  ``stack rm`` change things; ``preview`` and the rest do not.
- cdk: ``deploy``, ``destroy``, ``import``, ``rollback``, ``gc``; ``synth``, ``diff``, ``ls`` do not.
- eksctl: ``create``, ``delete``, ``upgrade``, ``scale``, ``drain``, ``set``, ``unset``, ``update``, ``enable``,
  ``disable``, ``associate``, ``disassociate``, ``register``, ``deregister``; ``get``, ``info``, ``version``,
  ``utils describe-*`` do not.

``-help``/``--help`` and ``-chdir=DIR``/``-var`` style options are skipped when finding the subcommand.
"""

from __future__ import annotations

from collections.abc import Sequence

from envlabel.commands import CommandContext, Operation, Unparsed, is_known, program_of, shown

PROGRAMS = frozenset({"terraform", "tofu", "terragrunt", "pulumi", "cdk", "eksctl"})

_TERRAFORM_CHANGES = frozenset({"apply", "destroy", "import", "taint", "untaint", "force-unlock", "refresh",
                                "run-all", "run"})
_TERRAFORM_STATE_CHANGES = frozenset({"rm", "mv", "push", "replace-provider"})
_CHANGES = {
    "pulumi": frozenset({"up", "update", "destroy", "refresh", "import", "cancel", "state", "watch"}),
    "cdk": frozenset({"deploy", "destroy", "import", "rollback", "gc", "watch", "bootstrap"}),
    "eksctl": frozenset({"create", "delete", "upgrade", "scale", "drain", "set", "unset", "update", "enable",
                         "disable", "associate", "disassociate", "register", "deregister", "anywhere"}),
}
_READ_ONLY_STATE = frozenset({"list", "show", "pull"})
_READ_ONLY_PULUMI_STATE = frozenset({"export"})
_READ_ONLY_WORKSPACE = frozenset({"list", "show", "select", "new"})


def read(argv: Sequence[str], context: CommandContext) -> list[Operation | Unparsed]:
    """Nothing for a command that only reads or plans; one :class:`Unparsed` for one that may change
    infrastructure (argv[0] is the program as written)."""
    tool = program_of(argv[0])
    words = [w for w in argv[1:] if not w.startswith("-")]
    if any(w in ("-help", "--help", "-h", "-version", "--version") for w in argv[1:]):
        return []
    if any(not is_known(w) for w in words[:2]):
        return [_unparsed(tool, argv, f"{tool}'s subcommand is computed at run time, so what it does cannot be "
                                      "known")]
    if tool in ("terraform", "tofu", "terragrunt"):
        return _terraform(tool, argv, words)
    changes = _CHANGES[tool]
    if not words or words[0] not in changes:
        return []
    if tool == "pulumi" and words[0] == "state" and len(words) > 1 and words[1] in _READ_ONLY_PULUMI_STATE:
        return []
    return [_unparsed(tool, argv, f"envlabel does not read what `{tool} {words[0]}` changes (its code, state or "
                                  "config file says, not the command line); preview it and have each change "
                                  "checked (envlabel check --action ACTION TARGET), or ask an approver to run it")]


def _terraform(tool: str, argv: Sequence[str], words: list[str]) -> list[Operation | Unparsed]:
    if not words:
        return []
    first = words[0]
    if first == "state" and (len(words) < 2 or words[1] not in _TERRAFORM_STATE_CHANGES):
        return []
    if first == "workspace" and (len(words) < 2 or words[1] in _READ_ONLY_WORKSPACE):
        return []
    if first not in _TERRAFORM_CHANGES | {"state", "workspace"}:
        return []
    if first == "apply" and len(words) > 1 and "=" not in words[1]:  # a plan file, not a -var value
        how = (f"check the plan first: `{tool} show -json {words[1]} | envlabel check-plan -`, which decides "
               "every change against its own target")
    else:
        how = (f"write the plan and check it: `{tool} plan{' -destroy' if first == 'destroy' else ''} -out=tfplan"
               f" && {tool} show -json tfplan | envlabel check-plan -`, then apply that plan file")
    return [_unparsed(tool, argv, f"`{tool} {' '.join(words[:2]) if first in ('state', 'workspace') else first}` "
                                  f"changes what the state and the code describe, which the command line does "
                                  f"not show; {how}")]


def _unparsed(tool: str, argv: Sequence[str], reason: str) -> Unparsed:
    return Unparsed(tool, "", shown(reason))  # the command's own text is filled in by plan_command
