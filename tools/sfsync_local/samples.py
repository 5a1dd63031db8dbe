"""The sample events under ``events/``: one helper to find and load them.

Layout: ``events/<function dir>/<name>.json`` belongs to the function whose ``CodeUri`` is
``functions/<function dir>/`` (``events/dispatcher/schedule.json`` -> ``DispatcherFunction``);
``events/statemachine/<name>.json`` are state machine execution inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfsync_local.cfn import load_template

__all__ = ["EVENTS_DIR", "SampleEvent", "list_samples", "load_sample"]

_ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = _ROOT / "events"
STATE_MACHINE_DIR = "statemachine"


@dataclass(frozen=True)
class SampleEvent:
    path: Path
    group: str  # the folder under events/: a function's code folder, or "statemachine"
    target: str  # the template logical id the event is for

    @property
    def name(self) -> str:
        return f"{self.group}/{self.path.stem}"

    def load(self) -> Any:
        return _read(self.path)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc


def _targets(template_path: Path) -> dict[str, str]:
    doc = load_template(template_path)
    targets: dict[str, str] = {}
    for logical_id, resource in doc["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            targets[Path(str(resource["Properties"]["CodeUri"])).name] = logical_id
        elif resource.get("Type") == "AWS::Serverless::StateMachine":
            targets.setdefault(STATE_MACHINE_DIR, logical_id)
    return targets


def list_samples(events_dir: Path = EVENTS_DIR, template_path: Path = _ROOT / "template.yaml") -> list[SampleEvent]:
    """Every ``events/<group>/*.json``, with the function or state machine it is for."""
    targets = _targets(template_path)
    samples = []
    for path in sorted(events_dir.glob("*/*.json")):
        group = path.parent.name
        if group not in targets:
            raise ValueError(
                f"{path}: no function has CodeUri functions/{group}/ (known: {', '.join(sorted(targets))})"
            )
        samples.append(SampleEvent(path, group, targets[group]))
    return samples


def load_sample(name_or_path: str | Path, events_dir: Path = EVENTS_DIR) -> Any:
    """Load a sample by path or by ``"<group>/<name>"`` (``"writeback/lead_stream_insert"``)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = events_dir / (str(name_or_path).removesuffix(".json") + ".json")
    if not path.is_file():
        known = ", ".join(sample.name for sample in list_samples(events_dir))
        raise FileNotFoundError(f"no sample event {name_or_path!r} (known: {known})")
    return _read(path)
