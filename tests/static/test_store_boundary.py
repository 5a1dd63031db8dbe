"""One store layer: only ``sfsync/store/`` (and ``sfsync/wiring.py``, which builds the adapters) talk
to AWS through boto3, botocore or PynamoDB (docs/decisions.md, 2026-12-07 "One store layer").

Every other module of the engine reaches DynamoDB through a store adapter behind a port (a
Protocol of its use case, e.g. :class:`sfsync.writeback.model.WriteBackStore`), so a table's layout
and the SDK's error handling live in one layer.

One exception, by name only: ``sfsync/items/`` (the codec) may import ``boto3.dynamodb.types`` for
its value types - ``TypeSerializer``, ``TypeDeserializer`` and ``Binary`` - which convert item values
between Python and DynamoDB's attribute form.  That is pure value (de)serialisation: no client, no
request, no I/O.  Nothing else from boto3 is allowed there.

The imports are read with :mod:`ast` (also those inside functions and under ``TYPE_CHECKING``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.static

ENGINE = Path(__file__).resolve().parents[2] / "layers" / "engine"
PACKAGE = "sfsync"
SDKS = frozenset({"boto3", "botocore", "pynamodb"})
#: Paths (relative to the package) whose modules may import the SDKs.
STORE_LAYER = ("store/", "wiring.py")
#: Package folder -> (module, names) it may take from an SDK, each pure value (de)serialisation.
VALUE_ONLY: dict[str, tuple[str, frozenset[str]]] = {
    "items/": ("boto3.dynamodb.types", frozenset({"TypeSerializer", "TypeDeserializer", "Binary"})),
}


def sdk_imports(tree: ast.AST) -> Iterator[tuple[str, list[str]]]:
    """(imported SDK module, names taken from it) for every import of boto3, botocore or PynamoDB."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in SDKS:
                    yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in SDKS:
            yield str(node.module), [alias.name for alias in node.names]


def offenders(root: Path = ENGINE) -> list[str]:
    """``<path>: <import>`` for every SDK import outside the store layer and its value-only exception."""
    found: list[str] = []
    package = root / PACKAGE
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative.startswith(STORE_LAYER):
            continue
        allowed = next((rule for folder, rule in VALUE_ONLY.items() if relative.startswith(folder)), None)
        for module, names in sdk_imports(ast.parse(path.read_text(), filename=str(path))):
            if allowed is not None and module == allowed[0] and names and set(names) <= allowed[1]:
                continue
            found.append(f"{relative}: {module}" + (f" ({', '.join(names)})" if names else ""))
    return found


def test_given_the_engine_then_only_the_store_layer_imports_boto3_botocore_or_pynamodb() -> None:
    assert offenders() == [], "DynamoDB/AWS access outside sfsync/store (put it behind a store adapter)"


def test_given_a_package_with_sdk_imports_then_the_check_finds_those_outside_the_store(tmp_path: Path) -> None:
    """The check itself, on a small package written here."""
    package = tmp_path / PACKAGE
    for folder in ("store", "items", "writeback"):
        (package / folder).mkdir(parents=True)
    (package / "wiring.py").write_text("import boto3\n")  # the composition root: fine
    (package / "store" / "tables.py").write_text("from botocore.exceptions import ClientError\n")  # fine
    (package / "items" / "codec.py").write_text("from boto3.dynamodb.types import TypeSerializer\n")  # fine
    (package / "items" / "wire.py").write_text("import boto3.dynamodb.types\nfrom boto3 import client\n")
    (package / "writeback" / "settle.py").write_text(
        "def f():\n    from pynamodb.models import Model\n\nimport botocore.exceptions\n"
    )
    assert offenders(tmp_path) == [
        "items/wire.py: boto3.dynamodb.types",
        "items/wire.py: boto3 (client)",
        "writeback/settle.py: botocore.exceptions",
        "writeback/settle.py: pynamodb.models (Model)",
    ]
