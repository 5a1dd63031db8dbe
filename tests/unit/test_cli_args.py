"""The `sfsync` command line's argument rules (pure parsing, no I/O)."""

from __future__ import annotations

import argparse

import pytest
from sfsync_local import errors

pytestmark = pytest.mark.unit


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    errors.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["errors", *argv])


@pytest.mark.parametrize(
    "argv",
    [
        ("--stack-name", "prod", "--region", "eu-west-1", "retry", "--object", "Lead"),
        ("retry", "--stack-name", "prod", "--region", "eu-west-1", "--object", "Lead"),
        ("--stack-name", "prod", "retry", "--region", "eu-west-1", "--object", "Lead"),
    ],
)
def test_given_where_options_before_or_after_retry_then_both_count(argv: tuple[str, ...]) -> None:
    args = parse(*argv)
    assert (args.action, args.stack_name, args.region, args.retry_object) == ("retry", "prod", "eu-west-1", "Lead")


def test_given_no_where_option_then_they_are_unset() -> None:
    args = parse("retry")
    assert (args.stack_name, args.endpoint_url, args.table, args.function, args.region) == (None,) * 5


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(5 minutes)", 300), ("rate(1 minute)", 60), ("rate(2 hours)", 7200), ("cron(0 * * * ? *)", None)],
)
def test_given_a_schedule_expression_then_its_rate_in_seconds(expression: str, seconds: int | None) -> None:
    from sfsync_local.runner import rate_seconds

    assert rate_seconds(expression) == seconds
