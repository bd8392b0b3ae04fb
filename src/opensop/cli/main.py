"""The `opensop` command line: validate files, print the schema, run and administer the engine."""

from __future__ import annotations

import gc
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from opensop.config import ConfigError, Settings
from opensop.definition.loader import Profile, load_definition
from opensop.definition.problems import DefinitionError, Problem
from opensop.definition.schema import schema_text

if TYPE_CHECKING:
    from opensop.service import Service

app = typer.Typer(
    name="opensop",
    help="OpenSOP: a durable engine for Standard Operating Procedures.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class SchemaFormat(StrEnum):
    JSON_SCHEMA = "json-schema"


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Process files (.sop.yaml / .sop.json).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the normalized definition or the errors as JSON.")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Allow local-only step types (shell, noop).")
    ] = False,
) -> None:
    """Check process files offline; prints file:line:col: path: message per error."""
    profile = Profile.LOCAL if local else Profile.SERVER
    failed = False
    results: list[dict[str, object]] = []
    for file in files:
        problems: list[Problem]
        try:
            data = file.read_bytes()
        except OSError as error:
            problems = [Problem("", "unreadable_file", f"cannot read the file: {error.strerror}")]
        else:
            try:
                definition = load_definition(data, filename=file.name, profile=profile)
            except DefinitionError as error:
                problems = error.problems
            else:
                problems = []
                if as_json:
                    results.append(
                        {"file": str(file), "valid": True, "definition": definition.to_json()}
                    )
                else:
                    typer.echo(
                        f"{file}: ok — {definition.name} {definition.version}, "
                        f"{len(definition.steps)} steps, trigger {definition.trigger.type}"
                    )
        if problems:
            failed = True
            if as_json:
                results.append(
                    {"file": str(file), "valid": False, "errors": [p.to_json() for p in problems]}
                )
            else:
                for problem in problems:
                    typer.echo(problem.render(str(file)), err=False)
    if as_json:
        payload = results[0] if len(results) == 1 else results
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    raise typer.Exit(1 if failed else 0)


@app.command()
def schema(
    format: Annotated[
        SchemaFormat, typer.Option("--format", help="Schema dialect to print.")
    ] = SchemaFormat.JSON_SCHEMA,
) -> None:
    """Print the JSON Schema of the process format (for editor autocompletion)."""
    sys.stdout.write(schema_text())


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///path.db or postgresql://user@host/db "
        "(default: $OPENSOP_DATABASE_URL or sqlite:///var/opensop.db).",
    ),
]


def _settings(**overrides: object) -> Settings:
    try:
        return Settings.from_env().with_overrides(**overrides)
    except ConfigError as error:
        typer.echo(f"configuration error: {error}", err=True)
        raise typer.Exit(2) from None


def _ensure_port_free(host: str, port: int) -> None:
    """Fail before printing a token or "listening" when the address is taken."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        typer.echo(
            f"error: cannot listen on {host}:{port}: {error.strerror or error}; "
            "choose another with --port or OPENSOP_PORT",
            err=True,
        )
        raise typer.Exit(2) from None


def _open_service(settings: Settings) -> Service:
    """The service on the configured store, or a one-line error and exit code 2."""
    import sqlalchemy as sa

    from opensop.server import build_service

    try:
        return build_service(settings)
    except (ValueError, OSError, sa.exc.SQLAlchemyError) as error:
        _database_error(settings, error)


def _check_database_url(settings: Settings) -> None:
    """A URL that names no supported store is said at once (before the port is checked)."""
    from opensop.store.database import dialect_of

    try:
        dialect_of(settings.database_url)
    except ValueError as error:
        _database_error(settings, error)


def _database_error(settings: Settings, error: BaseException) -> NoReturn:
    from opensop.store.database import redact_url

    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    typer.echo(
        f"error: cannot open the database {redact_url(settings.database_url)}: {reason}",
        err=True,
    )
    raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default 8080).")] = None,
    database_url: DatabaseUrl = None,
    load: Annotated[
        list[Path] | None,
        typer.Option("--load", help="Register every *.sop.yaml/*.sop.json under DIR at start-up."),
    ] = None,
    dev_token: Annotated[
        bool, typer.Option("--dev-token", help="Create an admin token and print it once.")
    ] = False,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            max=256,
            help="Background jobs (scripts, timers, schedules) run at once in this process; "
            "0 leaves them to `opensop worker` processes.",
        ),
    ] = 4,
) -> None:
    """Start the HTTP server with the engine in the same process."""
    import uvicorn

    from opensop.api.app import create_app, serving_app
    from opensop.auth import BootstrapTokenRefused, BootstrapTokenRevoked
    from opensop.server import load_folder
    from opensop.store.database import redact_url

    settings = _settings(host=host, port=port, database_url=database_url)
    _check_database_url(settings)
    _ensure_port_free(settings.host, settings.port)
    service = _open_service(settings)
    workspace = settings.default_workspace
    if settings.api_token:
        try:
            service.bootstrap_token(workspace, settings.api_token)
        except BootstrapTokenRevoked as error:
            typer.echo(f"warning: {error}; starting without it", err=True)
        except BootstrapTokenRefused as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
    for folder in load or []:
        if not folder.is_dir():
            typer.echo(f"--load {folder}: not a folder", err=True)
            raise typer.Exit(2)
        for report in load_folder(service, folder, workspace):
            line = f"{report.outcome:>10}  {report.path}"
            typer.echo(line + (f"  ({report.detail})" if report.detail else ""), err=True)
    if dev_token:
        new = service.create_token(workspace, "dev", None)
        typer.echo(
            f"\nDevelopment token (admin, shown once):\n\n  export OPENSOP_TOKEN={new.secret}\n",
            err=True,
        )
    elif not settings.api_token:
        typer.echo(
            "No token configured: create one with `opensop token create`; every "
            "request without a valid token is refused (401).",
            err=True,
        )
    typer.echo(
        f"OpenSOP listening on http://{settings.host}:{settings.port}  "
        f"(store: {redact_url(settings.database_url)})",
        err=True,
    )
    app_instance = create_app(service, settings, runner_concurrency=workers)
    # Everything built so far lives as long as the server: keep it out of every later
    # garbage collection, and collect the young generation less often (fewer pauses).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    uvicorn.run(
        serving_app(app_instance),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=access_log,
        server_header=False,
    )


@app.command()
def worker(
    database_url: DatabaseUrl = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Jobs run at once.")
    ] = 4,
) -> None:
    """Run only the background engine: scripts, timers, timeouts and schedules."""
    import asyncio
    import signal

    from opensop.runtime.runner import Runner

    settings = _settings(database_url=database_url)
    service = _open_service(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runner = Runner(
            service.work,
            service.clock,
            concurrency=concurrency,
            lease_seconds=settings.job_lease_seconds,
        )
        typer.echo(f"OpenSOP worker {runner.owner} running {concurrency} jobs at once", err=True)
        await runner.run(stop)

    asyncio.run(main())


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Bring the database schema up to date (serve does it too)."""
    from opensop.store.database import redact_url

    settings = _settings(database_url=database_url)
    _open_service(settings)
    typer.echo(f"schema up to date: {redact_url(settings.database_url)}")


token_app = typer.Typer(help="Manage API tokens without a running server.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    database_url: DatabaseUrl = None,
    workspace: Annotated[str, typer.Option(help="Workspace the token belongs to.")] = "default",
    name: Annotated[str, typer.Option(help="A label to tell tokens apart.")] = "cli",
    scopes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: admin,register,start,view,advance,cancel (default admin)."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print an object, not the bare token.")
    ] = False,
) -> None:
    """Create a token and print it (shown once)."""
    from opensop.errors import InvalidInputs

    settings = _settings(database_url=database_url)
    service = _open_service(settings)
    scope_list = [s.strip() for s in scopes.split(",") if s.strip()] if scopes else None
    try:
        new = service.create_token(workspace, name, scope_list)
    except InvalidInputs as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        from opensop.api.serialize import token_json

        sys.stdout.write(
            json.dumps({**token_json(new.record), "token": new.secret, "workspace": workspace})
            + "\n"
        )
    else:
        typer.echo(new.secret)


if __name__ == "__main__":  # pragma: no cover
    app()
