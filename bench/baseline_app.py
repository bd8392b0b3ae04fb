"""The yardstick for ``http_start.py``: a bare FastAPI app doing one SQLite insert per request.

``POST /sop/{name}/start`` parses the same JSON body as OpenSOP's start (a pydantic model
with ``inputs`` and ``metadata``), inserts one row in one committed transaction (WAL,
``synchronous`` FULL by default, one connection guarded by a lock, ``BEGIN IMMEDIATE``
like OpenSOP's writers) and answers 201 with a small JSON object. No auth, no engine, no
definition: what is left is FastAPI + uvicorn + one durable SQLite commit.

    python bench/baseline_app.py --port 8090 --db var/bench/baseline.db
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from ulid import ULID


class StartBody(BaseModel):
    inputs: dict[str, Any]
    metadata: dict[str, Any] | None = None


class Store:
    """One SQLite connection shared by the threadpool, one writer at a time."""

    def __init__(self, path: Path, synchronous: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(f"PRAGMA synchronous = {synchronous}")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, process TEXT NOT NULL, "
            "state TEXT NOT NULL, inputs TEXT NOT NULL, started_at TEXT NOT NULL)"
        )

    def insert(self, instance_id: str, process: str, inputs: dict[str, Any], now: str) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "INSERT INTO instances VALUES (?, ?, 'running', ?, ?)",
                    (instance_id, process, json.dumps(inputs), now),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def ping(self) -> None:
        with self._lock:
            self._conn.execute("SELECT 1").fetchone()


def create_app(store: Store) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        store.ping()
        return JSONResponse({"status": "ok"})

    @app.post("/sop/{name}/start", status_code=201)
    def start(name: str, body: StartBody) -> JSONResponse:
        now = datetime.now(UTC)
        instance_id = str(ULID.from_datetime(now))
        store.insert(instance_id, name, body.inputs, now.isoformat())
        return JSONResponse(
            {"id": instance_id, "process": name, "state": "running", "inputs": body.inputs},
            status_code=201,
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--db", type=Path, default=Path("var/bench/baseline.db"))
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    args = parser.parse_args()
    app = create_app(Store(args.db, args.synchronous))
    # The same settings `opensop serve` gives uvicorn: one process, no access log.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
