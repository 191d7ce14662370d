"""The fixtures that live outside the repository, in `shared/` beside the clone.

`shared/spec/` holds the Open Responses schema every stream is validated against, and
`shared/recordings/` real gpt-4o traffic replayed as the upstream. CI copies `shared/`
beside the clone, so there these tests always run. On a machine without it, a test that
needs it skips and says why, so `make test` still passes; with `CI` set it fails instead,
as the PostgreSQL tests do, so a CI run can never pass by skipping them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

SHARED_DIR = Path(__file__).resolve().parents[3] / "shared"
SPEC_PATH = SHARED_DIR / "spec" / "openresponses-openapi.json"
SHARED_RECORDINGS = SHARED_DIR / "recordings" / "responses-2025-10"


def require_shared(path: Path) -> Path:
    """`path`, if it exists; otherwise skip the test (fail it under CI), saying why."""
    if path.exists():
        return path
    reason = (
        f"{path} is missing: this test needs the shared fixtures (the Open Responses spec "
        f"and the recordings) in {SHARED_DIR}, beside the clone; copy shared/ there to run it"
    )
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def read_shared_json(path: Path) -> Any:
    return json.loads(require_shared(path).read_text())
