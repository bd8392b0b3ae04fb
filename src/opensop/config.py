"""Settings, built once from a mapping (the OPENSOP_* environment by default) and passed down.

Nothing else in the package reads ``os.environ``; command-line flags override these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_DATABASE_URL = "sqlite:///var/opensop.db"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    api_token: str | None = field(default=None, repr=False)
    process_dir: Path | None = None
    public_url: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    sqlite_synchronous: str = "FULL"
    default_workspace: str = "default"
    # How long a runner holds a job before another may take it (renewed while running).
    job_lease_seconds: float = 15.0

    def __repr__(self) -> str:
        from opensop.store.database import redact_url  # SQLAlchemy only when needed

        token = "'***'" if self.api_token else "None"
        return (
            f"Settings(database_url={redact_url(self.database_url)!r}, host={self.host!r}, "
            f"port={self.port}, api_token={token}, max_body_bytes={self.max_body_bytes})"
        )

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    def with_overrides(self, **changes: Any) -> Settings:
        """Flags win over the environment: apply the ones that were given."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        if url := source.get("OPENSOP_DATABASE_URL"):
            values["database_url"] = url
        if host := source.get("OPENSOP_HOST"):
            values["host"] = host
        if port := source.get("OPENSOP_PORT"):
            values["port"] = _int("OPENSOP_PORT", port, 1, 65535)
        if token := source.get("OPENSOP_API_TOKEN"):
            values["api_token"] = token
        if process_dir := source.get("OPENSOP_PROCESS_DIR"):
            values["process_dir"] = Path(process_dir)
        if public_url := source.get("OPENSOP_PUBLIC_URL"):
            values["public_url"] = public_url.rstrip("/")
        if body := source.get("OPENSOP_MAX_BODY_BYTES"):
            values["max_body_bytes"] = _int("OPENSOP_MAX_BODY_BYTES", body, 1024, 1 << 30)
        if sync := source.get("OPENSOP_SQLITE_SYNCHRONOUS"):
            if sync.upper() not in ("FULL", "NORMAL"):
                raise ConfigError("OPENSOP_SQLITE_SYNCHRONOUS must be FULL or NORMAL")
            values["sqlite_synchronous"] = sync.upper()
        if lease := source.get("OPENSOP_JOB_LEASE_SECONDS"):
            values["job_lease_seconds"] = float(_int("OPENSOP_JOB_LEASE_SECONDS", lease, 1, 3600))
        return cls(**values)


def _int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}")
    return value
