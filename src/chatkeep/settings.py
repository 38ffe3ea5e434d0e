"""The one place chatkeep reads its configuration.

Values come from ``CHATKEEP_*`` environment variables, then from an optional TOML file named by
``CHATKEEP_CONFIG``, then from the defaults below. ``Settings()`` is built once, in ``create_app``
or a CLI command, and passed down; nothing else reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class OpenAIProvider(BaseModel):
    """One OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, LM Studio, ...)."""

    name: str = "openai"
    base_url: str
    api_key: str = ""
    models: list[str] = Field(
        default_factory=list,
        description="Model ids to offer; empty means: ask the endpoint's /models list.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHATKEEP_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    config: Path | None = Field(default=None, description="Optional TOML settings file.")
    data_dir: Path = Path("data")
    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL; empty means SQLite at DATA_DIR/chatkeep.db.",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="FULL: a 2xx survives power loss. NORMAL survives a process crash only.",
    )
    host: str = "127.0.0.1"
    port: int = 8321
    workers: int = 1
    migrate_on_start: bool = True
    # prometheus_client's own variable: set by ``chatkeep serve --workers N`` for its workers.
    prometheus_multiproc_dir: str = Field(default="", validation_alias="PROMETHEUS_MULTIPROC_DIR")

    # Limits (G8).
    max_body_bytes: int = 16 * 1024 * 1024
    max_content_parts: int = 32
    max_image_bytes: int = 8 * 1024 * 1024
    max_text_chars: int = 1_000_000
    max_batch_items: int = 500
    rate_limit_per_minute: int = Field(
        default=1200, description="Requests per user (or address) per minute; 0 turns it off."
    )
    login_attempts_per_minute: int = 10
    auth_cache_ttl_s: float = Field(
        default=2.0,
        ge=0,
        description="How long a process reuses a checked API key or sign-in (0: never). A "
        "revocation or sign-out made in another process takes effect within this time.",
    )

    # Browser sign-in.
    cookie_secure: bool = False
    web_session_days: int = 30

    # Transient database errors are retried with backoff, never dropped (G9).
    db_retry_attempts: int = 8
    db_pool_size: int = 10

    # Model providers (G2, SPEC 7).
    openai_base_url: str = ""
    openai_api_key: str = ""
    openai_models: list[str] = Field(default_factory=list)
    providers: list[OpenAIProvider] = Field(default_factory=list)
    ollama_url: str = "http://127.0.0.1:11434"
    ollama_autodetect: bool = True
    demo_model: bool = True
    default_model: str = ""
    upstream_timeout_s: float = 120.0
    title_from_model: bool = False

    # Full-text search (docs/search.md): a PostgreSQL text search configuration; 'simple'
    # stems nothing, as SQLite's unicode61 does, so both databases find the same words.
    search_language: str = Field(default="simple", pattern=r"^[a-z_]{1,63}$")

    # Turns.
    checkpoint_interval_s: float = Field(default=0.25, le=0.25)
    lease_ttl_s: float = 10.0
    reaper_interval_s: float = 5.0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = env_settings().get("config") or init_settings().get("config")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(str(config))))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'chatkeep.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    def all_openai_providers(self) -> list[OpenAIProvider]:
        found = list(self.providers)
        if self.openai_base_url:
            found.insert(
                0,
                OpenAIProvider(
                    name="openai",
                    base_url=self.openai_base_url,
                    api_key=self.openai_api_key,
                    models=self.openai_models,
                ),
            )
        return found
