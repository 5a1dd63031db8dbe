"""``Emulator``'s seed drives the org's own random numbers unless a config says otherwise."""

from __future__ import annotations

import pytest
from sfsync_emulator.emulator import Emulator
from sfsync_emulator.store import OrgConfig

pytestmark = pytest.mark.unit


def _keys(emu: Emulator, n: int = 3) -> list[str]:
    return [emu.org.cdc.new_transaction_key() for _ in range(n)]


def _emulator(seed: int, config: OrgConfig | None = None) -> Emulator:
    return Emulator(seed=seed, tls=False, background=False, config=config)


def test_given_no_config_when_started_then_org_rng_is_seeded_by_the_emulator_seed() -> None:
    a, b, c = _emulator(11), _emulator(11), _emulator(12)
    try:
        assert a.org.config.seed == 11 and c.org.config.seed == 12
        assert _keys(a) == _keys(b)
        assert _keys(_emulator(11)) != _keys(c)
    finally:
        for emu in (a, b, c):
            emu.stop()


def test_given_explicit_config_when_started_then_its_seed_wins() -> None:
    emu = _emulator(11, OrgConfig(seed=3, replication_id_limit=9))
    other = _emulator(99, OrgConfig(seed=3))
    try:
        assert emu.org.config.seed == 3 and emu.org.config.replication_id_limit == 9
        assert _keys(emu) == _keys(other)
    finally:
        emu.stop()
        other.stop()
