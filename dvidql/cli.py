"""Command line: ``dvidql serve`` runs the service, ``dvidql demo`` fills a store with demo data,
``dvidql ingest`` loads grayscale or a segmentation into a running server and ``dvidql pyramid``
downsamples grayscale there."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
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
MetaOpt = Annotated[str | None, typer.Option(
    "--meta", help="distributed store: PostgreSQL URL of the metadata (with --blobs)")]
BlobsOpt = Annotated[str | None, typer.Option(
    "--blobs", help="distributed store: s3://bucket/prefix for the blocks (with --meta)")]
S3EndpointOpt = Annotated[str | None, typer.Option(
    "--s3-endpoint", help="S3 server URL for non-AWS servers (keys from DVIDQL_S3_ACCESS_KEY "
                          "and DVIDQL_S3_SECRET_KEY)")]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except DvidqlError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from None


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def _keep_freed_memory() -> None:
    """Let glibc's malloc reuse freed voxel buffers instead of returning them to the kernel.

    A 256^3 read allocates and frees a 16 MiB output and hundreds of 256 KiB blocks; by
    default those sizes are mmapped and unmapped each time, and the page faults of touching
    fresh pages cost more than decoding the blocks (about 2.5x the whole read). Keeping up to
    1 GiB of freed heap trades resident memory for that. A no-op on other C libraries."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 256 * 1024 * 1024)
        mallopt(_M_TRIM_THRESHOLD, 1024 * 1024 * 1024)


@app.command()
def serve(
    data: DataOpt = None,
    config: ConfigOpt = None,
    meta: MetaOpt = None,
    blobs: BlobsOpt = None,
    s3_endpoint: S3EndpointOpt = None,
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
    settings = _settings(config, data=data, meta=meta, blobs=blobs, s3_endpoint=s3_endpoint,
                         host=host, port=port, mode=mode, admin_token=admin_token,
                         log_level=log_level, access_log=access_log or None)
    _configure_logging(settings.log_level)
    _keep_freed_memory()
    from dvidql.app import build_app
    from dvidql.service import check_stores

    try:  # a clear message and exit status, not a start-up traceback from the server
        asyncio.run(check_stores(settings))
    except DvidqlError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None

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
def demo(data: DataOpt = None, config: ConfigOpt = None, meta: MetaOpt = None,
         blobs: BlobsOpt = None, s3_endpoint: S3EndpointOpt = None) -> None:
    """Create the demo repo (versions, branches, a merge, keyvalue data) unless present."""
    settings = _settings(config, data=data, meta=meta, blobs=blobs, s3_endpoint=s3_endpoint)
    _configure_logging(settings.log_level)
    from dvidql.demo import populate

    try:
        message = asyncio.run(populate(settings))
    except DvidqlError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(message)


@app.command()
def gc(
    data: DataOpt = None,
    config: ConfigOpt = None,
    meta: MetaOpt = None,
    blobs: BlobsOpt = None,
    s3_endpoint: S3EndpointOpt = None,
    min_age: Annotated[float, typer.Option(
        min=0, help="spare blobs written in the last this many seconds (distributed store; "
                    "keep it well above the longest write)")] = 3600.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, delete nothing")] = False,
) -> None:
    """Delete blobs that no version references (left by failed or overwritten writes). The
    embedded store must not be in use by a server; the distributed one may be."""
    settings = _settings(config, data=data, meta=meta, blobs=blobs, s3_endpoint=s3_endpoint)
    _configure_logging(settings.log_level)
    from dvidql.service import open_stores
    from dvidql.storage.gc import collect_garbage
    from dvidql.storage.versioned import VersionedKV

    async def run() -> str:
        meta_store, blob_store = await open_stores(settings)
        try:
            kv = VersionedKV(meta_store, blob_store)
            return (await collect_garbage(kv, min_age=min_age, dry_run=dry_run)).summary()
        finally:
            await blob_store.close()
            await meta_store.close()

    try:
        typer.echo(asyncio.run(run()))
    except DvidqlError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


ServerArg = Annotated[str, typer.Argument(help="the server, e.g. http://127.0.0.1:8000")]
UuidArg = Annotated[str, typer.Argument(help="version: UUID, unique prefix or uuid:branch")]
NameArg = Annotated[str, typer.Argument(help="instance name")]


@app.command()
def ingest(
    server: ServerArg,
    uuid: UuidArg,
    name: NameArg,
    source: Annotated[str, typer.Argument(
        help="a .npy file or a zarr array directory (v2 or v3) of uint8 grayscale or of "
             "uint64, uint32 or non-negative int64 labels; or grayscale PNG/TIFF slices: a "
             "directory, one image, or a quoted glob like 'slices/*.tif'")],
    offset: Annotated[str, typer.Option(
        help="voxel x,y,z of the source's first voxel; a multiple of the block size")
    ] = "0,0,0",
    create: Annotated[bool, typer.Option(
        "--create", help="create the instance if it is missing")] = False,
    type_name: Annotated[str | None, typer.Option(
        "--type", help="uint8blk or labelmap: the instance's type, checked against an existing "
                       "one (default: uint8blk for uint8 sources, labelmap for labels)")] = None,
    block_size: Annotated[str, typer.Option(
        help="BlockSize of a created instance: n or x,y,z (labelmap: multiples of 8)")] = "64",
    compression: Annotated[str, typer.Option(
        help="Compression of a created instance: lz4, gzip, none, or for uint8blk also "
             "jpeg[:quality]")] = "lz4",
    voxel_size: Annotated[str | None, typer.Option(
        help="VoxelSize of a created instance: n or x,y,z")] = None,
    max_downres_level: Annotated[int | None, typer.Option(
        min=0, max=255, help="MaxDownresLevel of a created labelmap (default: lower scales "
                             "until one block holds the volume, at least 1)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="concurrent requests")] = 4,
    batch_blocks: Annotated[int | None, typer.Option(
        min=1, help="blocks per batch (one query of the stored blocks, then posts of the "
                    "missing); default 64 for grayscale, 16 for labels")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="write every block, even those already stored (also for servers "
                            "without the stored-blocks endpoint, such as DVID)")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bar")] = False,
) -> None:
    """Load a grayscale volume into a uint8blk instance, or a segmentation into a labelmap
    instance (label indices and lower scales built), of a running server, in parallel batches
    of blocks. Blocks the version already stores are skipped, so an interrupted run resumes
    when repeated and a finished one writes nothing new (a labelmap run still finishes lower
    scales an interrupted run left)."""
    from dvidql.ingest import CreateSettings, DvidClient, IngestError, open_source, parse_offset
    from dvidql.ingest import ingest as run_ingest

    settings = (CreateSettings(block_size, compression, voxel_size, max_downres_level)
                if create else None)
    try:
        start = parse_offset(offset)
        volume = open_source(source)
        try:
            with DvidClient(server, uuid, name, connections=workers) as client:
                report = run_ingest(client, volume, offset=start, create=settings,
                                    type_name=type_name, workers=workers,
                                    batch_blocks=batch_blocks,
                                    overwrite=overwrite, show_progress=not no_progress)
        finally:
            volume.close()
    except IngestError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; run the same command again to resume (stored blocks are "
                   "skipped)", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"ingested {volume.description} into {name} at {uuid}: {report.summary()}")


@app.command()
def pyramid(
    server: ServerArg,
    uuid: UuidArg,
    name: NameArg,
    levels: Annotated[int | None, typer.Option(
        min=1, max=20, help="levels below full scale (default: until one block holds all)")
    ] = None,
) -> None:
    """Build or update the downsampled levels <name>_1, <name>_2, ... of a uint8blk instance on
    a running server, recomputing only blocks written since the last build."""
    from dvidql.ingest import DvidClient, IngestError, format_pyramid

    try:
        with DvidClient(server, uuid, name) as client:
            report = client.pyramid(levels)
    except IngestError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(format_pyramid(report))
