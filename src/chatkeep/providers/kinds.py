"""What a listed model is for, from its metadata or, failing that, its name: only a chat model
may be the default (issue 8, item 3), whatever order the gateway lists its models in."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chatkeep.providers.base import ModelKind

# Names as OpenAI, Ollama, vLLM and LiteLLM deployments spell them.
_BY_NAME: list[tuple[ModelKind, re.Pattern[str]]] = [
    ("embedding", re.compile(r"embed|\bbge\b|\bbge-|\be5-|\bgte-|minilm|rerank", re.I)),
    ("audio", re.compile(r"whisper|\btts\b|tts-|transcribe|speech|audio", re.I)),
    ("image", re.compile(r"dall-e|gpt-image|imagen|stable-diffusion|sdxl|\bflux", re.I)),
    ("moderation", re.compile(r"moderation|llama-?guard|shieldgemma", re.I)),
]
# Metadata words (OpenAI-style "type", LiteLLM's "mode", Ollama's "capabilities"/"family").
_BY_WORD: dict[str, ModelKind] = {
    "embedding": "embedding",
    "embeddings": "embedding",
    "rerank": "embedding",
    "bert": "embedding",
    "nomic-bert": "embedding",
    "audio_transcription": "audio",
    "audio_speech": "audio",
    "transcription": "audio",
    "image_generation": "image",
    "moderation": "moderation",
    "moderations": "moderation",
}


def model_kind(entry: Mapping[str, Any]) -> ModelKind:
    words: list[str] = []
    for key in ("type", "mode", "task"):
        if isinstance(entry.get(key), str):
            words.append(entry[key])
    details = entry.get("details")
    if isinstance(details, dict) and isinstance(details.get("family"), str):
        words.append(details["family"])
    capabilities = entry.get("capabilities")
    if isinstance(capabilities, list) and capabilities and "completion" not in capabilities:
        words += [c for c in capabilities if isinstance(c, str)]
    for word in words:
        kind = _BY_WORD.get(word.lower())
        if kind is not None:
            return kind
    name = str(entry.get("id", ""))
    for kind, pattern in _BY_NAME:
        if pattern.search(name):
            return kind
    return "chat"
