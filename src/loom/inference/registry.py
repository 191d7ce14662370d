"""Model ids are `provider/model`; the registry maps them to a provider and its model name."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from loom.errors import InvalidRequestError, NotFoundError
from loom.inference.base import Provider


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    provider: Provider
    model: str  # the provider's own name for it

    @property
    def id(self) -> str:
        return f"{self.provider.name}/{self.model}"


class ModelRegistry:
    def __init__(self, providers: list[Provider]):
        self.providers: dict[str, Provider] = {p.name: p for p in providers}

    async def list_model_ids(self) -> list[str]:
        listed = await asyncio.gather(*(p.list_models() for p in self.providers.values()))
        ids: list[str] = []
        for provider, models in zip(self.providers.values(), listed, strict=True):
            ids.extend(f"{provider.name}/{m}" for m in models or [])
        return ids

    async def resolve(self, model_id: object, param: str = "model") -> ResolvedModel:
        if not isinstance(model_id, str) or not model_id:
            raise InvalidRequestError("'model' must be a non-empty string", param=param)
        provider_name, sep, model = model_id.partition("/")
        provider = self.providers.get(provider_name) if sep else None
        if provider is None or not model:
            raise await self._unknown(model_id)
        known = await provider.list_models()
        if known is not None and model not in known:
            raise await self._unknown(model_id)
        return ResolvedModel(provider, model)

    async def _unknown(self, model_id: str) -> NotFoundError:
        known = await self.list_model_ids()
        listing = ", ".join(known) if known else "none"
        return NotFoundError(
            f"The model '{model_id}' does not exist. Known models: {listing}. "
            "Model ids are 'provider/model'.",
            param="model",
            code="model_not_found",
        )

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.providers.values()))
