"""Read a SAM/CloudFormation template and resolve its intrinsic functions, for the local stack.

Only what ``template.yaml`` uses is supported, and everything else fails loudly:

* a YAML loader that understands the short tags (``!Ref``, ``!Sub``, ``!GetAtt``, ``!Join``, ``!If``,
  ``!Select``, ``!Split``, ``!Equals``, ``!Not``, ``!And``, ``!Or``, ``!Condition``, ``!Base64``);
* parameters (defaults + overrides, validated against ``AllowedValues``/``AllowedPattern``/``MinValue``/
  ``MaxValue``), pseudo parameters, conditions;
* ``Ref``/``Fn::GetAtt`` through a caller-supplied :class:`ResourceResolver` (logical id -> physical
  name/ARN), so the deployer decides the physical names once and every reference follows (also to
  the rules SAM generates for ``Schedule`` events, see :meth:`Template.sam_generated_resources`);
* SAM ``Globals`` merged into each ``AWS::Serverless::Function`` the way SAM merges them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

__all__ = [
    "NO_VALUE",
    "ResourceResolver",
    "Template",
    "TemplateError",
    "load_template",
    "merge_function_globals",
]


class TemplateError(ValueError):
    """The template (or a parameter given for it) cannot be read or resolved."""


class _NoValue:
    """``AWS::NoValue``: the key or list item that holds it disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    "Sub": "Fn::Sub",
    "GetAtt": "Fn::GetAtt",
    "Join": "Fn::Join",
    "If": "Fn::If",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "Base64": "Fn::Base64",
    "FindInMap": "Fn::FindInMap",
    "GetAZs": "Fn::GetAZs",
}


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader plus the CloudFormation short-form tags."""


def _make_constructor(full_name: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if full_name == "Fn::GetAtt":
                logical_id, _, attribute = str(value).partition(".")
                value = [logical_id, attribute]
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:  # pragma: no cover - yaml has no other node kinds
            raise TemplateError(f"unsupported node for !{full_name}")
        return {full_name: value}

    return construct


for _short, _full in _SHORT_TAGS.items():
    _CfnLoader.add_constructor(f"!{_short}", _make_constructor(_full))


def load_template(path: str | Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML (or JSON) template into plain dicts (long-form intrinsics)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        document = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with CFN tags only
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not a valid template: {exc}") from exc
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return document


class ResourceResolver(Protocol):
    """Maps a logical id to what ``Ref`` and ``Fn::GetAtt`` return for it."""

    def ref(self, logical_id: str) -> str: ...

    def get_att(self, logical_id: str, attribute: str) -> str: ...


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@dataclass
class Template:
    """A loaded template plus the parameter values and pseudo parameters of one deployment."""

    document: dict[str, Any]
    region: str
    account_id: str
    stack_name: str
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(init=False)
    _conditions: dict[str, bool] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.parameters = self._resolve_parameters()

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        region: str,
        account_id: str,
        stack_name: str,
        parameter_overrides: Mapping[str, str] | None = None,
    ) -> Template:
        return cls(load_template(path), region, account_id, stack_name, dict(parameter_overrides or {}))

    # ------------------------------------------------------------------ parameters and conditions
    def _resolve_parameters(self) -> dict[str, Any]:
        declared: dict[str, Any] = self.document.get("Parameters", {}) or {}
        unknown = sorted(set(self.parameter_overrides) - set(declared))
        if unknown:
            raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}; declared: {', '.join(declared)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in self.parameter_overrides:
                raw = str(self.parameter_overrides[name])
            elif "Default" in spec:
                raw = str(spec["Default"])
            else:
                raise TemplateError(f"template parameter {name} has no default: give it a value")
            values[name] = self._validate_parameter(name, spec, raw)
        return values

    @staticmethod
    def _validate_parameter(name: str, spec: Mapping[str, Any], raw: str) -> Any:
        kind = spec.get("Type", "String")
        allowed = spec.get("AllowedValues")
        if allowed is not None and raw not in [str(v) for v in allowed]:
            raise TemplateError(f"parameter {name}={raw!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and re.fullmatch(pattern, raw) is None:
            detail = spec.get("ConstraintDescription", f"must match {pattern}")
            raise TemplateError(f"parameter {name}={raw!r}: {detail}")
        if kind == "Number":
            try:
                number = float(raw)
            except ValueError as exc:
                raise TemplateError(f"parameter {name}={raw!r} is not a number") from exc
            if "MinValue" in spec and number < float(spec["MinValue"]):
                raise TemplateError(f"parameter {name}={raw} is below MinValue {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                raise TemplateError(f"parameter {name}={raw} is above MaxValue {spec['MaxValue']}")
            return raw
        if kind == "CommaDelimitedList":
            return [part.strip() for part in raw.split(",")] if raw else []
        if kind != "String":
            raise TemplateError(f"parameter {name}: type {kind} is not supported locally")
        return raw

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.document.get("Conditions", {}) or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name}")
            value = self._eval_condition(conditions[name])
            self._conditions[name] = value
        return self._conditions[name]

    def _eval_condition(self, node: Any) -> bool:
        if isinstance(node, dict) and len(node) == 1:
            (key, arg), *_ = node.items()
            if key == "Fn::Equals":
                left, right = (self.resolve(part) for part in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._eval_condition(arg[0])
            if key == "Fn::And":
                return all(self._eval_condition(part) for part in arg)
            if key == "Fn::Or":
                return any(self._eval_condition(part) for part in arg)
            if key == "Condition":
                return self.condition(arg)
        raise TemplateError(f"unsupported condition expression: {node!r}")

    def resource_enabled(self, logical_id: str) -> bool:
        resource = self.resources[logical_id]
        condition = resource.get("Condition")
        return True if condition is None else self.condition(condition)

    # ------------------------------------------------------------------ resources
    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.document["Resources"]
        return resources

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == resource_type and self.resource_enabled(logical_id)
        }

    def sam_generated_resources(self) -> dict[str, tuple[str, str, str]]:
        """Resources SAM generates that the template may reference: logical id -> (type, function, event).

        SAM documents the logical ids of the resources it generates as referenceable; the only ones
        supported here are the EventBridge rules of the functions' ``Schedule`` events
        (``<function logical id><event name>``, type ``AWS::Events::Rule``).
        """
        generated: dict[str, tuple[str, str, str]] = {}
        for logical_id in self.resources_of_type("AWS::Serverless::Function"):
            events = (self.resources[logical_id].get("Properties") or {}).get("Events") or {}
            for event_name, event in events.items():
                if event.get("Type") == "Schedule":
                    generated[f"{logical_id}{event_name}"] = ("AWS::Events::Rule", logical_id, event_name)
        return generated

    def function_properties(self, logical_id: str) -> dict[str, Any]:
        """The properties of a serverless function after SAM Globals are merged in (unresolved)."""
        resource = self.resources[logical_id]
        if resource.get("Type") != "AWS::Serverless::Function":
            raise TemplateError(f"{logical_id} is not an AWS::Serverless::Function")
        globals_ = (self.document.get("Globals") or {}).get("Function") or {}
        return merge_function_globals(globals_, resource.get("Properties") or {})

    # ------------------------------------------------------------------ intrinsic functions
    def pseudo(self, name: str) -> Any:
        pseudo_parameters: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name not in pseudo_parameters:
            raise TemplateError(f"unsupported pseudo parameter {name}")
        return pseudo_parameters[name]

    def resolve(self, node: Any, resources: ResourceResolver | None = None) -> Any:
        """Resolve every intrinsic function in ``node`` (deep); ``AWS::NoValue`` entries are dropped."""
        if isinstance(node, list):
            items = [self.resolve(item, resources) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), *_ = node.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._intrinsic(key, arg, resources)
        resolved = {key: self.resolve(value, resources) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def _ref(self, name: str, resources: ResourceResolver | None) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources or name in self.sam_generated_resources():
            if resources is None:
                raise TemplateError(f"Ref {name}: resources are not resolvable here")
            return resources.ref(name)
        raise TemplateError(f"Ref to unknown name {name}")

    def _get_att(self, logical_id: str, attribute: str, resources: ResourceResolver | None) -> Any:
        if logical_id not in self.resources and logical_id not in self.sam_generated_resources():
            raise TemplateError(f"Fn::GetAtt to unknown resource {logical_id}")
        if resources is None:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute}: resources are not resolvable here")
        return resources.get_att(logical_id, attribute)

    def _intrinsic(self, key: str, arg: Any, resources: ResourceResolver | None) -> Any:
        if key == "Ref":
            return self._ref(str(arg), resources)
        if key == "Fn::GetAtt":
            parts = arg.split(".", 1) if isinstance(arg, str) else list(arg)
            return self._get_att(str(parts[0]), str(parts[1]), resources)
        if key == "Fn::Sub":
            return self._sub(arg, resources)
        if key == "Fn::Join":
            delimiter, values = arg
            items = self.resolve(values, resources)
            return str(delimiter).join(str(item) for item in items)
        if key == "Fn::Select":
            index, values = arg
            items = self.resolve(values, resources)
            position = int(self.resolve(index, resources))
            if not 0 <= position < len(items):
                raise TemplateError(f"Fn::Select index {position} out of range for {items!r}")
            return items[position]
        if key == "Fn::Split":
            delimiter, source = arg
            return str(self.resolve(source, resources)).split(str(delimiter))
        if key == "Fn::If":
            name, if_true, if_false = arg
            return self.resolve(if_true if self.condition(name) else if_false, resources)
        if key == "Fn::Base64":
            import base64

            return base64.b64encode(str(self.resolve(arg, resources)).encode()).decode()
        if key in {"Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"}:
            return self._eval_condition({key: arg})
        raise TemplateError(f"unsupported intrinsic function {key}")

    def _sub(self, arg: Any, resources: ResourceResolver | None) -> str:
        if isinstance(arg, str):
            text, variables = arg, {}
        else:
            text, variables = arg[0], {name: self.resolve(value, resources) for name, value in arg[1].items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self._get_att(logical_id, attribute, resources))
            return str(self._ref(name, resources))

        return _SUB_VARIABLE.sub(replace, str(text))


def merge_function_globals(globals_: Mapping[str, Any], properties: Mapping[str, Any]) -> dict[str, Any]:
    """Merge SAM ``Globals.Function`` into one function's properties, as SAM does.

    Scalars: the function wins. Maps (``Environment``, ``Tags``...): merged recursively, the function
    wins per key. Lists (``Layers``, ``Architectures``...): the function's list is appended to the global one
    (without duplicates) - SAM concatenates lists.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(globals_))
    for key, value in properties.items():
        if key in merged and isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = merge_function_globals(merged[key], value)
        elif key in merged and isinstance(merged[key], list) and isinstance(value, list):
            merged[key] = merged[key] + [item for item in value if item not in merged[key]]
        else:
            merged[key] = copy.deepcopy(value)
    return merged
