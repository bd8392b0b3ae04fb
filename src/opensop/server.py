"""The composition root: settings → database → service → HTTP app, built in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from opensop.clock import Clock, SystemClock
from opensop.config import Settings
from opensop.errors import InvalidDefinition, VersionConflict
from opensop.service import Service
from opensop.store.database import Database

log = logging.getLogger("opensop")

PROCESS_FILE_PATTERNS = ("*.sop.yaml", "*.sop.yml", "*.sop.json")


@dataclass(frozen=True)
class LoadReport:
    path: Path
    outcome: str  # "registered", "unchanged" or "refused"
    detail: str = ""


def build_service(settings: Settings, clock: Clock | None = None) -> Service:
    _ensure_sqlite_folder(settings.database_url)
    db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    db.migrate()
    return Service(db, clock or SystemClock(), process_dir=settings.process_dir)


def load_folder(service: Service, folder: Path, workspace_id: str) -> list[LoadReport]:
    """Register every process file under ``folder`` (idempotent: unchanged files stay)."""
    reports: list[LoadReport] = []
    files = sorted({path for pattern in PROCESS_FILE_PATTERNS for path in folder.rglob(pattern)})
    for path in files:
        try:
            registration = service.register_in(
                workspace_id, path.read_bytes(), filename=path.name, base_dir=path.parent
            )
        except (InvalidDefinition, VersionConflict) as error:
            detail = (
                "; ".join(f"{d.get('path', '')}: {d.get('message', '')}" for d in error.details[:5])
                or error.message
            )
            reports.append(LoadReport(path, "refused", detail))
            continue
        outcome = "registered" if registration.created else "unchanged"
        reports.append(LoadReport(path, outcome, registration.definition.version))
    return reports


def _ensure_sqlite_folder(url: str) -> None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
