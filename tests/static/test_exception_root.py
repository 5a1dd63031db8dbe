"""Every exception the engine and its handlers define is under one root, :class:`SfsyncError`.

Read from the source with :mod:`ast` (nothing imported), over the engine package and every
``functions/*/app.py``.  Private classes (``_Name``) are control flow inside one module and never
leave it, so they are left out.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

pytestmark = pytest.mark.static

REPO = Path(__file__).resolve().parents[2]
ROOT = "SfsyncError"


def _sources() -> list[Path]:
    return sorted((REPO / "layers" / "engine" / "sfsync").rglob("*.py")) + sorted((REPO / "functions").glob("*/app.py"))


def _base_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _classes(paths: list[Path]) -> dict[str, tuple[list[str], str]]:
    """Every class defined at any depth: name -> (its base names, where it is)."""
    found: dict[str, tuple[list[str], str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [name for name in map(_base_name, node.bases) if name is not None]
                where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                found[node.name] = (bases, f"{where}:{node.lineno}")
    return found


def _is_builtin_exception(name: str) -> bool:
    value = getattr(builtins, name, None)
    return isinstance(value, type) and issubclass(value, BaseException)


def unrooted_exceptions(paths: list[Path]) -> list[str]:
    """The public exception classes that do not derive from :data:`ROOT` (``where: name``)."""
    classes = _classes(paths)

    def is_exception(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if _is_builtin_exception(name):
            return True
        if name not in classes or name in seen:
            return False
        return any(is_exception(base, seen | {name}) for base in classes[name][0])

    def rooted(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name == ROOT:
            return True
        if name not in classes or name in seen:
            return False
        return any(rooted(base, seen | {name}) for base in classes[name][0])

    return sorted(
        f"{where}: {name}"
        for name, (_, where) in classes.items()
        if not name.startswith("_") and is_exception(name) and not rooted(name)
    )


def test_every_public_exception_is_under_the_root() -> None:
    assert unrooted_exceptions(_sources()) == []


def test_the_check_sees_an_unrooted_exception(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "class SfsyncError(Exception): ...\n"
        "class Fine(SfsyncError): ...\n"
        "class Stray(RuntimeError): ...\n"
        "class _Private(ValueError): ...\n"
        "class NotAnError: ...\n"
    )
    found = unrooted_exceptions([sample])
    assert [entry.split(": ")[-1] for entry in found] == ["Stray"]
