"""Commands outside Python: ``check-command`` (a shell command line, checked), and the coding-agent hooks
(``hook claude-code|codex``, ``hook install``)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, cast

import click

from envlabel.config import Config, config_path
from envlabel.hooks import AGENTS
from envlabel.records import CheckRecord
from envlabel.service.cli.agents import CHECK_EXIT, format_check
from envlabel.service.cli.kit import EXIT_USAGE, config_option, emit_json, fail, get_config, open_configured_store

#: where ``hook install --write`` puts each agent's hook by default (user-wide: every project of that user)
SETTINGS = {"claude-code": "~/.claude/settings.json", "codex": "~/.codex/hooks.json"}
#: seconds the agent waits for the hook; envlabel's own deadline (ENVLABEL_TIMEOUT, 5 s) ends well before, so
#: the hook always answers (an agent runs the command when a hook times out)
HOOK_TIMEOUT = 30


@click.command(name="check-command", context_settings={"ignore_unknown_options": True,
                                                       "allow_interspersed_args": False})
@click.option("--shell", "line", default=None, metavar="'CMD LINE'",
              help="The command line, split with shell rules (&&, ||, ;, pipes, bash -c, sudo, env...).")
@click.option("--json", "as_json", is_flag=True, help="Print {decision, operations: [check JSON], unparsed}.")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
@config_option
def check_command_command(line: str | None, as_json: bool, argv: tuple[str, ...]) -> None:
    """May this command run? `check-command -- aws rds delete-db-instance ...` or `--shell 'CMD LINE'`.

    Every infrastructure operation it would perform (aws, kubectl, helm, gcloud, curl against an API server)
    is checked like `envlabel check`; the strictest decision wins. Exit 0 allow, 4 require approval, 5 deny.
    Checked through ENVLABEL_URL when it is set, else against the configured store."""
    if (line is None) == (not argv):
        fail("give the command either after -- (envlabel check-command -- aws rds ...) or as "
             "--shell 'CMD LINE', not both", EXIT_USAGE)
    command: str | list[str] = line if line is not None else list(argv)
    answer = decide(command)
    if as_json:
        emit_json(answer)
    else:
        click.echo(format_answer(answer))
    sys.exit(CHECK_EXIT.get(str(answer["decision"]), CHECK_EXIT["deny"]))


def decide(command: str | list[str]) -> dict[str, Any]:
    """The decided command, planned here; checked by the server at ENVLABEL_URL, else by the local store."""
    from envlabel.service.core.commands import check_command, local_context

    config = _config_if_any()
    context = local_context(config, os.environ, os.getcwd())
    if os.environ.get("ENVLABEL_URL"):
        from envlabel.client import Client
        from envlabel.commands import decide_command, plan_command

        plan = plan_command(command, context)
        with Client() as client, client.deadline():  # one deadline for every check of the command
            return decide_command(plan, lambda op: client.check(op.target, op.action, op.contents,
                                                                        parameters=op.parameters))
    from dataclasses import replace

    from envlabel.service.cli.agents import cli_caller
    from envlabel.service.core.authority import Authority
    from envlabel.service.core.decision_log import DirectDecisionLog
    from envlabel.service.core.query import Query

    config = config or get_config()
    store = open_configured_store()
    # recorded in the decision log like `envlabel check`, as the command's own interface
    authority = Authority(Query(config, store), log=DirectDecisionLog(store) if config.decisions.enabled else None)
    caller = replace(cli_caller(config, None), interface="check-command")
    return check_command(authority, command, context, caller=caller)


def _config_if_any() -> Config | None:
    """The config when one is named or present (``--config``, ``$ENVLABEL_CONFIG``, ``./envlabel.yaml``);
    without ENVLABEL_URL the defaults stand in for a missing one (the default store)."""
    ctx = click.get_current_context()
    if config_path(ctx.obj.get("config_path")) is None and os.environ.get("ENVLABEL_URL"):
        return None
    return get_config()


def format_answer(answer: dict[str, Any]) -> str:
    """Each operation as ``envlabel check`` prints it, what was not understood, and the command's decision."""
    operations, unparsed = answer.get("operations", []), answer.get("unparsed", [])
    if not operations and not unparsed:
        return "allow: no infrastructure operation in this command (nothing to check)"
    lines: list[str] = []
    for op in operations:
        if op.get("command"):
            lines.append(f"{op['command']}:")
        lines.append(format_check(cast(CheckRecord, op)))
    for item in unparsed:
        lines.append(f"{item.get('decision')}: not understood: {item.get('command')}")
        lines.append(f"  - {item.get('reason')}")
    parts = [f"{len(operations)} operation(s)"] + ([f"{len(unparsed)} not understood"] if unparsed else [])
    lines.append(f"decision: {answer['decision']} ({', '.join(parts)})")
    return "\n".join(lines)


# -- hooks ----------------------------------------------------------------------------------------------
@click.group(name="hook")
def hook() -> None:
    """Coding-agent hooks: `hook claude-code|codex` answers the agent's PreToolUse call on stdin; `hook install
    AGENT` prints (or --write merges) the agent's settings entry."""


def _agent_command(agent: str) -> click.Command:
    @click.command(name=agent)
    @click.option("--url", default=None, help="The envlabel server (default: $ENVLABEL_URL, else 127.0.0.1:8080).")
    @click.pass_context
    def answer(ctx: click.Context, url: str | None) -> None:
        from envlabel.hooks import main as hook_main

        args = [agent] + (["--url", url] if url else [])
        if ctx.obj.get("config_path"):
            args += ["--config", ctx.obj["config_path"]]
        sys.exit(hook_main(args))

    answer.help = (f"Answer one {agent} PreToolUse hook call (JSON on stdin) in {agent}'s protocol. The shell "
                   "command is planned here and checked by the envlabel server; unreachable: denied.")
    return answer


for _agent in AGENTS:
    hook.add_command(_agent_command(_agent))


@hook.command(name="install")
@click.argument("agent", type=click.Choice(AGENTS))
@click.option("--write", is_flag=True, help="Merge the entry into the settings file (other entries are kept).")
@click.option("--settings", "settings_path", default=None, type=click.Path(dir_okay=False),
              help="The settings file (default: ~/.claude/settings.json for claude-code, ~/.codex/hooks.json "
                   "for codex).")
@click.option("--url", default=None, help="Bake this envlabel server URL into the hook command.")
@click.pass_context
def install(ctx: click.Context, agent: str, write: bool, settings_path: str | None, url: str | None) -> None:
    """Print AGENT's PreToolUse hook entry for envlabel, or merge it into its settings file with --write."""
    command = hook_command(agent, ctx.obj.get("config_path"), url)
    path = Path(os.path.expanduser(settings_path or SETTINGS[agent]))
    if not write:
        click.echo(json.dumps({"hooks": {"PreToolUse": [hook_entry(command)]}}, indent=2))
        click.echo(f"# add this to {path} (or run again with --write to merge it in)"
                   + (f"; {CODEX_NOTE}" if agent == "codex" else ""), err=True)
        return
    try:
        existing = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        fail(f"cannot read {path} as JSON ({exc}); fix or move it, then run again", EXIT_USAGE)
    try:
        merged = merge_settings(existing, agent, command)
    except ValueError as exc:
        fail(f"{path}: {exc}; fix it, then run again", EXIT_USAGE)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.envlabel-tmp")
    partial.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)  # whole or not at all: the agent never reads a half-written settings file
    click.echo(f"installed the envlabel PreToolUse hook for {agent} in {path}: {command}"
               + (f"\n{CODEX_NOTE}" if agent == "codex" else ""))


CODEX_NOTE = ("Codex runs hooks by default from 0.124 (older: [features] codex_hooks = true in "
              "~/.codex/config.toml) and asks you to review and trust a new hook before it runs")


def hook_command(agent: str, config: str | None, url: str | None) -> str:
    """The shell command the agent runs: this envlabel, by absolute path (an agent's PATH may not hold it)."""
    words = [*_envlabel_executable(), "hook", agent]
    if config:
        words += ["--config", str(Path(config).resolve())]
    if url:
        words += ["--url", url]
    return shlex.join(words)


def _envlabel_executable() -> list[str]:
    script = Path(sys.argv[0])
    if script.name == "envlabel" and script.is_file():
        return [str(script.resolve())]
    found = shutil.which("envlabel")
    return [str(Path(found).resolve())] if found else [sys.executable, "-m", "envlabel.hooks"]


def hook_entry(command: str) -> dict[str, Any]:
    """The PreToolUse matcher group both agents read (``hooks.json`` / ``settings.json``)."""
    return {"matcher": "Bash", "hooks": [{"type": "command", "command": command, "timeout": HOOK_TIMEOUT}]}


def merge_settings(existing: Any, agent: str, command: str) -> dict[str, Any]:
    """``existing`` settings with envlabel's hook for ``agent`` in ``hooks.PreToolUse``: an envlabel hook
    installed before is replaced, every other entry and key is kept. Raises ValueError for a shape no agent
    reads (the file must be fixed by hand)."""
    if not isinstance(existing, dict):
        raise ValueError("the settings are not a JSON object")
    hooks = existing.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise ValueError("'hooks' is not an object")
    groups = hooks.setdefault("PreToolUse", [])
    if not isinstance(groups, list):
        raise ValueError("'hooks.PreToolUse' is not a list")
    kept = []
    for group in groups:
        if isinstance(group, dict) and isinstance(group.get("hooks"), list):
            others = [h for h in group["hooks"] if not _is_envlabel_hook(h, agent)]
            if not others:
                continue  # a group that held only envlabel's hook
            group = {**group, "hooks": others}  # noqa: PLW2901 - the group as kept
        kept.append(group)
    hooks["PreToolUse"] = [*kept, hook_entry(command)]
    return existing


def _is_envlabel_hook(handler: Any, agent: str) -> bool:
    """An envlabel hook for ``agent`` installed earlier (any path to envlabel, any options)."""
    if not isinstance(handler, dict) or not isinstance(handler.get("command"), str):
        return False
    try:
        words = shlex.split(handler["command"])
    except ValueError:
        return False
    if any(Path(word).name == "envlabel" for word in words):
        return any(words[i:i + 2] == ["hook", agent] for i in range(len(words)))
    return "envlabel.hooks" in words and agent in words  # python -m envlabel.hooks AGENT


ALL = [check_command_command, hook]
