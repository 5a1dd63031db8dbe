"""Full copy: the full-sync workflow's steps (plan the copy, load its slices, finish it)."""
