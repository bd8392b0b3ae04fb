"""Connection setup for PostgreSQL through psycopg 3. No queries live here.

Transactions run at READ COMMITTED; the store's writes are single-row updates guarded by
a revision check or ``SELECT ... FOR UPDATE [SKIP LOCKED]``, which that level serves.
Read transactions are marked READ ONLY through the dialect's ``postgresql_readonly``
option, which SQLAlchemy resets when the connection goes back to the pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

READ_OPTIONS: Final[Mapping[str, Any]] = {"postgresql_readonly": True}

_DRIVER: Final = "postgresql+psycopg"
_ACCEPTED: Final = ("postgres", "postgresql", _DRIVER)


def normalize_url(url: str | URL) -> URL:
    """The URL with the psycopg 3 driver: ``postgresql://`` and ``postgres://`` map to it."""
    sa_url = sa.make_url(url)
    if sa_url.drivername not in _ACCEPTED:
        raise ValueError(
            f"unsupported PostgreSQL driver {sa_url.drivername!r}: use postgresql:// "
            "(OpenSOP talks to PostgreSQL through psycopg 3)"
        )
    return sa_url.set(drivername=_DRIVER)


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    echo: bool = False,
) -> Engine:
    """An engine for a ``postgresql://`` URL."""
    sa_url = normalize_url(url)
    # Defaults that the URL's own query parameters override.
    defaults = {"application_name": "opensop", "connect_timeout": 10}
    connect_args = {k: v for k, v in defaults.items() if k not in sa_url.query}
    return sa.create_engine(
        sa_url,
        isolation_level="READ COMMITTED",
        pool_size=pool_size,
        max_overflow=max_overflow,
        # A restarted server leaves dead connections in the pool; test before use.
        pool_pre_ping=True,
        connect_args=connect_args,
        echo=echo,
    )
