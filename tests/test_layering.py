"""Nothing below the HTTP layer imports from it: the engine, inference, tools, stores and
retrieval (and the services and testing modules they are used through) must work with no
`loom.api` at all. Read from the source with `ast`, so an import inside a function counts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "loom"
BELOW_API = ("engine", "inference", "tools", "store", "rag", "security")
ALSO_BELOW_API = ("services.py", "testing.py")
FORBIDDEN = "loom.api"


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every module `source` imports; `module` resolves relative ones."""
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(source: str, module: str) -> list[str]:
    return [
        f"line {line} imports {name}"
        for line, name in imported_modules(source, module)
        if name == FORBIDDEN or name.startswith(FORBIDDEN + ".")
    ]


def checked_files() -> list[Path]:
    files = [p for d in BELOW_API if (SRC / d).is_dir() for p in (SRC / d).rglob("*.py")]
    return files + [SRC / name for name in ALSO_BELOW_API if (SRC / name).exists()]


def test_the_checked_packages_exist():
    names = {p.relative_to(SRC).parts[0] for p in checked_files()}
    assert {"engine", "inference", "tools", "store", "services.py", "testing.py"} <= names


@pytest.mark.parametrize("path", checked_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_import_from_the_api_layer(path: Path):
    module = "loom." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    assert violations(path.read_text(), module) == []


@pytest.mark.parametrize(
    "source",
    [
        "import loom.api.sse",
        "import loom.api",
        "from loom.api import sse",
        "from loom.api.sse import typed_event_bytes",
        "def later():\n    from loom.api.json import OrjsonResponse\n",
        "from ..api import sse",
        "from .. import api",
    ],
)
def test_the_check_sees_every_form_of_import(source):
    """The check must fail when someone adds such an import, in any spelling."""
    assert violations(source, "loom.engine.sneaky")


def test_the_check_ignores_names_that_only_look_alike():
    source = "import loom.apis\nfrom loom import app\nfrom . import api_like"
    assert violations(source, "loom.engine.fine") == []
