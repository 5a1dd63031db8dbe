"""Builders shared by the test tiers: the engine pinned to an emulator, and the copy-vs-org comparison."""
