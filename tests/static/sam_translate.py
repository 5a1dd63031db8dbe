"""Translate template.yaml to plain CloudFormation with the SAM translator; the JSON goes to stdout.

Run with the SAM CLI's interpreter, not the project's: ``.venv-sam/bin/python tests/static/sam_translate.py
TEMPLATE [Name=Value ...]``.  aws-sam-translator pins pydantic to a minor version the engine's pins
do not share, so it lives only in ``.venv-sam`` (a dependency of the SAM CLI; docs/decisions.md).

The translator wants S3 locations for code and definitions: ``CodeUri``, ``ContentUri`` and
``DefinitionUri`` are replaced with placeholder S3 URIs (nothing is read or uploaded).  Managed
policies named in ``Policies`` are left as SAM leaves a name it cannot map (the loader maps none,
and calls no IAM), so a managed policy shows up in ``ManagedPolicyArns`` either way.  The region
comes from ``AWS_DEFAULT_REGION`` (the translator needs one for ARNs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

_PLACEHOLDER_LOCATIONS = {
    "AWS::Serverless::Function": ("CodeUri", "s3://sfsync-static/functions.zip"),
    "AWS::Serverless::LayerVersion": ("ContentUri", "s3://sfsync-static/layer.zip"),
    "AWS::Serverless::StateMachine": ("DefinitionUri", "s3://sfsync-static/definition.json"),
}


class _NoIamPolicyLoader:
    """The translator's managed-policy loader without IAM: no name is mapped to an ARN."""

    def load(self) -> dict[str, str]:
        return {}


def translate(template_path: Path, parameters: dict[str, str]) -> dict[str, Any]:
    document: dict[str, Any] = yaml_parse(template_path.read_text(encoding="utf-8"))
    for resource in document["Resources"].values():
        placeholder = _PLACEHOLDER_LOCATIONS.get(resource.get("Type"))
        if placeholder is not None:
            key, uri = placeholder
            resource.setdefault("Properties", {})[key] = uri
    translated: dict[str, Any] = transform(document, parameters, _NoIamPolicyLoader())  # type: ignore[arg-type]
    return translated


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: sam_translate.py TEMPLATE [Name=Value ...]", file=sys.stderr)
        return 2
    parameters = dict(arg.split("=", 1) for arg in argv[1:])
    json.dump(translate(Path(argv[0]), parameters), sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
