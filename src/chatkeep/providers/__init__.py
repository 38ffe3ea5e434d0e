"""Model providers: one small protocol, an OpenAI-compatible client, a local Ollama, a demo."""

from chatkeep.providers.base import Chunk, ModelInfo, Provider, ProviderError
from chatkeep.providers.registry import Providers, UnknownModel

__all__ = ["Chunk", "ModelInfo", "Provider", "ProviderError", "Providers", "UnknownModel"]
