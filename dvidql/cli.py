"""Command line: ``dvidql serve`` runs the service, ``dvidql demo`` fills a store with demo data."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from dvidql.config import Mode, Settings, load_settings
from dvidql.errors import DvidqlError

__all__ = ["app"]

app = typer.Typer(help="dvidql: a versioned connectomics data service.", no_args_is_help=True)

DataOpt = Annotated[Path | None, typer.Option("--data", "-d", help="embedded store directory")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file")]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except DvidqlError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


@app.command()
def serve(
    data: DataOpt = None,
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="serve GET/HEAD only")] = False,
    full_write: Annotated[
        bool, typer.Option("--full-write", help="allow writes to committed versions (expert)")
    ] = False,
    admin_token: Annotated[
        str | None, typer.Option(envvar="DVIDQL_ADMIN_TOKEN", help="token for privileged calls")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
    access_log: Annotated[bool, typer.Option("--access-log", help="log every request")] = False,
) -> None:
    """Serve the DVID-compatible HTTP API under /api and GraphQL at /graphql."""
    if read_only and full_write:
        typer.echo("error: --read-only and --full-write exclude each other", err=True)
        raise typer.Exit(2)
    mode = Mode.READONLY if read_only else Mode.FULLWRITE if full_write else None
    settings = _settings(config, data=data, host=host, port=port, mode=mode,
                         admin_token=admin_token, log_level=log_level,
                         access_log=access_log or None)
    _configure_logging(settings.log_level)
    from dvidql.app import build_app

    logging.getLogger("dvidql").info(
        "dvidql on http://%s:%d (GraphQL at /graphql, DVID API at /api)",
        settings.host, settings.port)
    try:
        uvicorn.run(build_app(settings), host=settings.host, port=settings.port,
                    loop="uvloop", http="httptools", ws="websockets-sansio",
                    log_level=settings.log_level.lower(), access_log=settings.access_log)
    except DvidqlError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


@app.command()
def demo(data: DataOpt = None, config: ConfigOpt = None) -> None:
    """Create the demo repo (versions, branches, a merge, keyvalue data) unless present."""
    settings = _settings(config, data=data)
    _configure_logging(settings.log_level)
    from dvidql.demo import populate

    try:
        message = asyncio.run(populate(settings))
    except DvidqlError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(message)
