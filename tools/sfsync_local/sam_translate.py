"""Translate template.yaml to plain CloudFormation with the SAM translator; the JSON goes to stdout.

Run with the SAM CLI's interpreter, not the project's::

    .venv-sam/bin/python tools/sfsync_local/sam_translate.py TEMPLATE [--locations JSON] [--inline-definitions]
        [Name=Value ...]

aws-sam-translator pins pydantic to a minor version the engine's pins do not share, so it lives only in
``.venv-sam`` (a dependency of the SAM CLI; docs/decisions.md).  This file imports nothing of the
project, so it runs there as it is.

The translator wants S3 locations for code and definitions (what ``sam package`` would upload):

* ``--locations`` maps a logical id to the ``s3://bucket/key`` of its code (``CodeUri`` of a function,
  ``ContentUri`` of a layer), e.g. objects uploaded to a stand-in AWS's S3 (:mod:`sfsync_local.aws_standin`);
  resources it does not name get a placeholder URI (nothing is read or uploaded: the static checks);
* ``--inline-definitions`` replaces each state machine's ``DefinitionUri`` with the file's content as
  ``Definition`` (its ``DefinitionSubstitutions`` stay for CloudFormation to apply); without it the
  ``DefinitionUri`` is a placeholder URI too.

Managed policies named in ``Policies`` are left as SAM leaves a name it cannot map (the loader maps none
and calls no IAM).  The region comes from ``AWS_DEFAULT_REGION`` (the translator needs one for ARNs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_LOCATION_PROPERTY = {
    "AWS::Serverless::Function": ("CodeUri", "s3://sfsync-static/functions.zip"),
    "AWS::Serverless::LayerVersion": ("ContentUri", "s3://sfsync-static/layer.zip"),
    "AWS::Serverless::StateMachine": ("DefinitionUri", "s3://sfsync-static/definition.json"),
}


class _NoIamPolicyLoader:
    """The translator's managed-policy loader without IAM: no name is mapped to an ARN."""

    def load(self) -> dict[str, str]:
        return {}


def translate(
    template_path: Path,
    parameters: dict[str, str],
    *,
    locations: dict[str, str] | None = None,
    inline_definitions: bool = False,
) -> dict[str, Any]:
    from samcli.yamlhelper import yaml_parse
    from samtranslator.translator.transform import transform

    document: dict[str, Any] = yaml_parse(template_path.read_text(encoding="utf-8"))
    where = locations or {}
    for logical_id, resource in document["Resources"].items():
        kind = resource.get("Type")
        if kind not in _LOCATION_PROPERTY:
            continue
        key, placeholder = _LOCATION_PROPERTY[kind]
        properties = resource.setdefault("Properties", {})
        if kind == "AWS::Serverless::StateMachine" and inline_definitions:
            source = template_path.parent / str(properties.pop("DefinitionUri"))
            properties["Definition"] = json.loads(source.read_text(encoding="utf-8"))
            continue
        properties[key] = where.get(logical_id, placeholder)
    translated: dict[str, Any] = transform(document, parameters, _NoIamPolicyLoader())  # type: ignore[arg-type]
    return translated


def main(argv: list[str]) -> int:
    args = list(argv)
    locations: dict[str, str] = {}
    inline = False
    if "--inline-definitions" in args:
        args.remove("--inline-definitions")
        inline = True
    if "--locations" in args:
        at = args.index("--locations")
        locations = json.loads(args[at + 1])
        del args[at : at + 2]
    if not args:
        print(
            "usage: sam_translate.py TEMPLATE [--locations JSON] [--inline-definitions] [Name=Value ...]",
            file=sys.stderr,
        )
        return 2
    parameters = dict(arg.split("=", 1) for arg in args[1:])
    result = translate(Path(args[0]), parameters, locations=locations, inline_definitions=inline)
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
