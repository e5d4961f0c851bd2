"""``envlabel export aws-tag-policy``: an Organizations tag policy enforcing the canonical environment values.

One file, ``aws-tag-policy/<root id>.json`` (``organization.json`` when no organization root is stored),
holding one tag policy: for each configured tag key (``tag_keys``), the key's capitalization as written in
the config and the canonical environment names (``environments``) as its only compliant values. With
``enforced_for`` (AWS resource types such as ``ec2:instance``), a non-compliant tagging request on those
types is refused by AWS; without it the policy only reports.
"""

from __future__ import annotations

import re
from typing import Any

from envlabel.service.core.export import Artifact, ExportOptions, dump_json
from envlabel.service.core.export.aws_scp import read_organization
from envlabel.service.core.query import Query

KIND = "aws-tag-policy"
#: AWS's limit on one tag policy document, counted without whitespace
MAX_TAG_POLICY_CHARS = 10000
#: a tag policy's key names: AWS accepts letters, digits, spaces and _ . : / = + - @ (at most 128)
_TAG_KEY = re.compile(r"^[\w .:/=+\-@]{1,128}$")


def export(query: Query, options: ExportOptions) -> list[Artifact]:
    """The tag policy, attached to the organization's root when the store holds it."""
    roots = sorted(n.attach_id for n in read_organization(query).values() if n.kind == "aws:root")
    content = build_tag_policy(options.tag_keys, list(query.config.environments), options.enforced_for)
    document = {
        "target": roots[0] if roots else None, "policy_type": "TAG_POLICY",
        "policies": [{"name": "envlabel-environment-tags",
                      "description": "envlabel: the environment tag keys take only the canonical environment names",
                      "content": content}],
    }
    return [Artifact(f"{KIND}/{roots[0] if roots else 'organization'}.json", dump_json(document), tuple(roots))]


def build_tag_policy(tag_keys: tuple[str, ...], environments: list[str],
                     enforced_for: tuple[str, ...] = ()) -> dict[str, Any]:
    """The tag policy document (AWS's tag policy syntax: ``tags.KEY.tag_key``, ``tag_value``, ``enforced_for``).

    Keys that differ only in case are one tag policy key (AWS compares them ignoring case); the first spelling
    in ``tag_keys`` is the one assigned."""
    tags: dict[str, Any] = {}
    for key in tag_keys:
        if not _TAG_KEY.match(key):
            raise ValueError(f"tag_keys: {key!r} cannot be a tag policy key (letters, digits, spaces and "
                             "_ . : / = + - @, at most 128); remove it from tag_keys or skip aws-tag-policy")
        rule: dict[str, Any] = {"tag_key": {"@@assign": key}, "tag_value": {"@@assign": list(environments)}}
        if enforced_for:
            rule["enforced_for"] = {"@@assign": list(enforced_for)}
        tags.setdefault(key.lower(), rule)
    return {"tags": tags}
