"""Prompt templates and their versions: the storage behind `/v1/prompts`.

A prompt is a row holding its newest and its default version numbers; each saved version
is a row of its own and never changes. An update names the version it was based on and
succeeds only if that is still the newest (one conditional UPDATE), so two concurrent
edits cannot both become version N+1. Every query filters on the owner.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from loom.store.db import Database
from loom.store.errors import DuplicateIdError
from loom.store.schema import prompt_versions as versions_t
from loom.store.schema import prompts as prompts_t

Json = dict[str, Any]


class StaleVersionError(ValueError):
    """An update was based on a version that is no longer the newest."""

    def __init__(self, latest: int):
        super().__init__(f"the newest version is {latest}")
        self.latest = latest


class UnknownVersionError(LookupError):
    """The prompt exists, but not the version asked for."""


def _version(row: Any, default_version: int) -> Json:
    return {
        "prompt_id": row.prompt_id,
        "version": row.version,
        "prompt": row.prompt,
        "variables": list(row.variables),
        "is_default": row.version == default_version,
    }


_COLUMNS = (
    versions_t.c.prompt_id,
    versions_t.c.version,
    versions_t.c.prompt,
    versions_t.c.variables,
    prompts_t.c.default_version,
)


def _joined(owner: str) -> sa.Select:
    return (
        sa.select(*_COLUMNS)
        .select_from(
            versions_t.join(prompts_t, versions_t.c.prompt_id == prompts_t.c.id),
        )
        .where(prompts_t.c.owner == owner)
    )


class PromptStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, owner: str, prompt_id: str, text: str, variables: list[str]) -> Json:
        now = time.time()
        async with self._db.write() as conn:
            try:
                await conn.execute(
                    sa.insert(prompts_t).values(
                        id=prompt_id,
                        owner=owner,
                        created_at=now,
                        latest_version=1,
                        default_version=1,
                    )
                )
            except IntegrityError as exc:
                raise DuplicateIdError(f"prompt {prompt_id!r} already exists") from exc
            await conn.execute(
                sa.insert(versions_t).values(
                    prompt_id=prompt_id,
                    version=1,
                    owner=owner,
                    created_at=now,
                    prompt=text,
                    variables=variables,
                )
            )
        return {
            "prompt_id": prompt_id,
            "version": 1,
            "prompt": text,
            "variables": variables,
            "is_default": True,
        }

    async def get(self, owner: str, prompt_id: str, version: int | None = None) -> Json | None:
        """One version; the default one when `version` is None. None if either is unknown."""
        query = _joined(owner).where(versions_t.c.prompt_id == prompt_id)
        if version is None:
            query = query.where(versions_t.c.version == prompts_t.c.default_version)
        else:
            query = query.where(versions_t.c.version == version)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return _version(row, row.default_version) if row else None

    async def list(self, owner: str) -> list[Json]:
        """Every prompt of the owner, each at its default version, oldest first."""
        query = (
            _joined(owner)
            .where(versions_t.c.version == prompts_t.c.default_version)
            .order_by(prompts_t.c.created_at, prompts_t.c.id)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_version(row, row.default_version) for row in rows]

    async def versions(self, owner: str, prompt_id: str) -> list[Json] | None:
        query = (
            _joined(owner).where(versions_t.c.prompt_id == prompt_id).order_by(versions_t.c.version)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [_version(row, row.default_version) for row in rows] or None

    async def update(
        self,
        owner: str,
        prompt_id: str,
        *,
        based_on: int,
        text: str,
        variables: list[str],
        set_as_default: bool,
    ) -> Json | None:
        """Save a new version after `based_on`; None if the prompt is unknown. Raises
        StaleVersionError if `based_on` is not the newest version."""
        new = based_on + 1
        values: dict[str, Any] = {"latest_version": new}
        if set_as_default:
            values["default_version"] = new
        bump = (
            sa.update(prompts_t)
            .where(
                prompts_t.c.owner == owner,
                prompts_t.c.id == prompt_id,
                prompts_t.c.latest_version == based_on,
            )
            .values(**values)
            .returning(prompts_t.c.default_version)
        )
        async with self._db.write() as conn:
            default = (await conn.execute(bump)).scalar_one_or_none()
            if default is None:
                latest = (
                    await conn.execute(
                        sa.select(prompts_t.c.latest_version).where(
                            prompts_t.c.owner == owner, prompts_t.c.id == prompt_id
                        )
                    )
                ).scalar_one_or_none()
                if latest is None:
                    return None
                raise StaleVersionError(latest)
            await conn.execute(
                sa.insert(versions_t).values(
                    prompt_id=prompt_id,
                    version=new,
                    owner=owner,
                    created_at=time.time(),
                    prompt=text,
                    variables=variables,
                )
            )
        return {
            "prompt_id": prompt_id,
            "version": new,
            "prompt": text,
            "variables": variables,
            "is_default": default == new,
        }

    async def set_default(self, owner: str, prompt_id: str, version: int) -> Json | None:
        """Make `version` the default; None if the prompt is unknown. Raises
        UnknownVersionError if it has no such version."""
        exists = sa.exists().where(
            versions_t.c.prompt_id == prompt_id, versions_t.c.version == version
        )
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.update(prompts_t)
                .where(prompts_t.c.owner == owner, prompts_t.c.id == prompt_id, exists)
                .values(default_version=version)
            )
            if result.rowcount == 0:
                known = (
                    await conn.execute(
                        sa.select(prompts_t.c.id).where(
                            prompts_t.c.owner == owner, prompts_t.c.id == prompt_id
                        )
                    )
                ).first()
                if known is None:
                    return None
                raise UnknownVersionError(f"prompt {prompt_id!r} has no version {version}")
        return await self.get(owner, prompt_id, version)

    async def delete(self, owner: str, prompt_id: str) -> bool:
        async with self._db.write() as conn:
            await conn.execute(
                sa.delete(versions_t).where(
                    versions_t.c.owner == owner, versions_t.c.prompt_id == prompt_id
                )
            )
            result = await conn.execute(
                sa.delete(prompts_t).where(prompts_t.c.owner == owner, prompts_t.c.id == prompt_id)
            )
        return result.rowcount > 0
