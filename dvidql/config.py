"""Server settings: defaults, overridden by a TOML file, overridden by DVIDQL_* environment
variables, overridden by command-line flags."""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
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
    log_level: str = "info"
    access_log: bool = False
    config_file: Path | None = None


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
