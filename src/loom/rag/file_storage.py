"""Where uploaded files' bytes live: one file per upload under the data directory.

The database row (store/files.py) says who owns a file and what it is; this module only
places bytes on disk. A path is `<root>/<first two hex of the id's suffix>/<file id>`, so no
directory grows too large, and it never contains the client's filename.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


class FileStorage:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def relative_path(self, file_id: str) -> str:
        return f"{file_id[-2:]}/{file_id}"

    def path(self, relative: str) -> Path:
        return self.root / relative

    def partial_path(self, file_id: str) -> Path:
        """Where an upload is written until it is complete and recorded."""
        path = self.root / "partial" / file_id
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def commit(self, partial: Path, file_id: str) -> str:
        relative = self.relative_path(file_id)
        final = self.path(relative)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
        return relative

    async def read(self, relative: str) -> bytes:
        return await asyncio.to_thread(self.path(relative).read_bytes)

    def remove(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)
