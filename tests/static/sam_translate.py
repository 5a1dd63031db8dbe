"""Translate template.yaml to plain CloudFormation with the SAM translator; the JSON goes to stdout.

Run with the SAM CLI's interpreter, not the project's: ``.venv-sam/bin/python tests/static/sam_translate.py
TEMPLATE [Name=Value ...]``.  The translation itself is ``tools/sfsync_local/sam_translate.py`` (which the
stand-in AWS deployer runs with S3 code locations); here every ``CodeUri``, ``ContentUri`` and
``DefinitionUri`` is a placeholder S3 URI (nothing is read or uploaded), which is all the static checks
need.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "sfsync_local"))

from sam_translate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
