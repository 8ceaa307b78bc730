"""Server settings: defaults, overridden by a TOML file, overridden by DVIDQL_* environment
variables, overridden by command-line flags."""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dvidql.errors import BadRequest

__all__ = ["Mode", "Settings", "load_settings"]


class Mode(StrEnum):
    READWRITE = "readwrite"
    READONLY = "readonly"
    FULLWRITE = "fullwrite"  # writes allowed on committed versions (experts only, as in DVID)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DVIDQL_", extra="forbid")

    data: Path = Field(Path("./dvidql-data"), description="embedded store directory")
    # The distributed store: both set, or neither (the embedded store in ``data``).
    meta: str | None = Field(None, description="PostgreSQL URL of the metadata store "
                             "(postgresql://user@host:port/db; the password may come from "
                             "PGPASSWORD)")
    blobs: str | None = Field(None, description="S3 URL of the block store: s3://bucket/prefix")
    s3_endpoint: str | None = Field(None, description="S3 server URL, for non-AWS servers")
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = Field(None, description="from DVIDQL_S3_SECRET_KEY")
    s3_concurrency: int = Field(64, gt=0, description="S3 requests in flight per process")
    pg_pool_size: int = Field(20, gt=1, description="PostgreSQL connections per process")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    mode: Mode = Mode.READWRITE
    admin_token: str | None = Field(None, description="enables privileged calls when given")
    note: str = ""
    max_body_bytes: int = Field(512 * 1024 * 1024, gt=0)
    max_request_bytes: int = Field(
        1024 * 1024 * 1024, gt=0, description="largest voxel response or write (413 beyond)")
    max_throttled_ops: int = Field(1, gt=0, description="concurrent throttle=true requests")
    inline_value_bytes: int = Field(64 * 1024, gt=0, description="larger values go to blobs")
    block_cache_bytes: int = Field(256 * 1024 * 1024, ge=0, description="memory for blocks "
                                   "decoded for hot reads, such as labels at points (0: none)")
    allow_labelmap_split: bool = Field(True, description="labelmap split and split-supervoxel "
                                       "(voxel rewrites) are served")
    log_level: str = "info"
    access_log: bool = False
    config_file: Path | None = None

    @model_validator(mode="after")
    def _one_store(self) -> Settings:
        if (self.meta is None) != (self.blobs is None):
            raise ValueError("the distributed store needs both meta (a postgresql:// URL) "
                             "and blobs (an s3:// URL); give neither for the embedded store")
        if self.meta is not None and not self.meta.startswith(("postgresql://",
                                                                "postgres://")):
            raise ValueError(f"meta must be a postgresql:// URL, not {self.meta!r}")
        if self.blobs is not None and not self.blobs.startswith("s3://"):
            raise ValueError(f"blobs must be an s3://bucket/prefix URL, not {self.blobs!r}")
        return self

    @property
    def distributed(self) -> bool:
        return self.meta is not None

    def describe_store(self) -> str:
        """Where the data lives, for logs and server info (no secrets)."""
        if self.meta is None:
            return f"embedded LMDB at {self.data}"
        from dvidql.storage.postgres import describe_dsn

        return f"PostgreSQL at {describe_dsn(self.meta)}, blocks in {self.blobs}"


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from an optional TOML file (top-level keys or a ``[server]`` table), the
    environment, then ``overrides`` (None values are ignored)."""
    from_file: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            parsed = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BadRequest(f"cannot read config file {path}: {exc}") from exc
        from_file = dict(parsed.pop("server", {}), **parsed)
        if "data" in from_file:  # relative paths are relative to the config file
            from_file["data"] = path.parent / from_file["data"]
        from_file["config_file"] = path
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        env_only = Settings()
        explicit_env = env_only.model_dump(exclude_unset=True)
        return Settings(**{**from_file, **explicit_env, **given})
    except ValidationError as exc:
        raise BadRequest(f"invalid settings: {exc}") from exc
