"""The one place chatkeep reads its configuration.

Values come from ``CHATKEEP_*`` environment variables, then from an optional TOML file named by
``CHATKEEP_CONFIG``, then from the defaults below. ``Settings()`` is built once, in ``create_app``
or a CLI command, and passed down; nothing else reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class ProviderConfig(BaseModel):
    """One model endpoint: OpenAI-compatible (OpenAI, vLLM, llama.cpp, LM Studio, Ollama,
    LiteLLM, ...) or Anthropic's Messages API. Keys and header values are secrets: never
    returned by an endpoint nor logged (issue 8, item 7)."""

    name: str = Field(default="openai", pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["openai", "anthropic"] = "openai"
    base_url: str
    api_key: SecretStr = SecretStr("")
    models: list[str] = Field(
        default_factory=list,
        description="Model ids to offer (an allow-list); empty means: the endpoint's /models.",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra HTTP headers sent with every request."
    )
    first_token_timeout_s: float | None = Field(
        default=None, gt=0, description="Default: upstream_first_token_timeout_s."
    )
    idle_timeout_s: float | None = Field(
        default=None, gt=0, description="Default: upstream_timeout_s."
    )


OpenAIProvider = ProviderConfig  # its first name, from when every provider was OpenAI-style


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
    login_attempts_per_minute: int = Field(
        default=10, description="Failed sign-ins per account per minute, then 429."
    )
    login_attempts_per_address_per_minute: int = Field(
        default=30, description="Sign-in attempts per client address per minute, then 429."
    )
    max_concurrent_generations_per_user: int = Field(
        default=0, description="Replies one user may have generating at once; 0 turns it off."
    )
    # 0: every request checks its key or cookie in the database, so a revocation or a disabled
    # account stops at once on every worker (issue 11). Above 0 trades that for a lookup saved.
    auth_cache_ttl_s: float = Field(
        default=0.0,
        ge=0,
        description="How long a process reuses a checked API key or sign-in (0: never). A "
        "revocation or sign-out made in another process takes effect within this time.",
    )

    # Browser sign-in.
    cookie_secure: bool = Field(
        default=False, description="Always mark cookies Secure (else: when the request is HTTPS)."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDRs of reverse proxies whose X-Forwarded-For/-Proto count; "
        "from anyone else those headers are ignored.",
    )
    web_session_days: int = 30

    # Transient database errors are retried with backoff, never dropped (G9).
    db_retry_attempts: int = 8
    db_pool_size: int = 10

    # Model providers (G2, SPEC 7).
    openai_base_url: str = ""
    openai_api_key: SecretStr = SecretStr("")
    openai_models: list[str] = Field(default_factory=list)
    providers: list[ProviderConfig] = Field(default_factory=list)
    ollama_url: str = "http://127.0.0.1:11434"
    ollama_autodetect: bool = True
    demo_model: bool = True
    default_model: str = ""
    # Silence allowed between two tokens once a reply streams, and before its first token: a
    # local model may queue a request or spend minutes on a long prompt (issue 8, item 5).
    upstream_timeout_s: float = Field(default=120.0, gt=0)
    upstream_first_token_timeout_s: float = Field(default=600.0, gt=0)
    # A failing provider is asked again after this, doubling up to the maximum (issue 8).
    provider_recheck_min_s: float = Field(default=2.0, gt=0)
    provider_recheck_max_s: float = Field(default=60.0, gt=0)
    # A comment line on an event stream this often keeps proxies from closing it (SPEC 9).
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    title_from_model: bool = False

    # Full-text search (docs/search.md): a PostgreSQL text search configuration; 'simple'
    # stems nothing, as SQLite's unicode61 does, so both databases find the same words.
    search_language: str = Field(default="simple", pattern=r"^[a-z_]{1,63}$")

    # Turns.
    checkpoint_interval_s: float = Field(default=0.25, le=0.25)
    lease_ttl_s: float = 10.0
    reaper_interval_s: float = 5.0

    # Scale-out (docs/deploy.md): Redis relays live text between replicas, carries cancel and
    # delete to a reply's owner, and holds the rate limits of the whole deployment. Optional:
    # without it replicas follow stored checkpoints; the database stays the truth either way.
    redis_url: str = Field(default="", description="redis://host:port/db; empty: no Redis.")
    redis_stream_maxlen: int = Field(default=10_000, ge=100)
    redis_stream_ttl_s: int = Field(default=300, ge=1, description="Kept after a reply ends.")

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

    def all_openai_providers(self) -> list[ProviderConfig]:
        found = list(self.providers)
        if self.openai_base_url:
            found.insert(
                0,
                ProviderConfig(
                    name="openai",
                    base_url=self.openai_base_url,
                    api_key=self.openai_api_key,
                    models=self.openai_models,
                ),
            )
        return found
