"""Publish a whole export folder (dist/): every target's backbone bundle, then every task memory.

    python -m demo_server publish DIST --server http://host:8000 [--token T] [--target android]   # over HTTP
    flask --app demo_server publish DIST [--target android]          # straight into this server's instance
    flask --app demo_server gc [--min-age-s 3600] [--dry-run]        # delete blobs no registry row names

The token defaults to $SPARTAN_EDGE_PUBLISH_TOKEN. Re-publishing unchanged files is a no-op (same versions).
DIST/manifest.json is the dist manifest (spartan_formats.dist_manifest), read and validated before anything is sent.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from spartan_formats import FormatError
from spartan_formats.digest import sha256_file
from spartan_formats.dist_manifest import backbone_description, load_dist_manifest


class PublishError(Exception):
    pass


@dataclass
class BundleFile:
    path: str  # relative to the target folder, as served under /backbone/<target>/<path>
    local: Path
    sha256: str
    size: int


def _checked(dist: Path, rel: str, sha: str | None, size: int | None) -> Path:
    p = (dist / rel).resolve()
    if not p.is_relative_to(dist.resolve()) or not p.is_file():
        raise PublishError(f"manifest names {rel!r}, which is not a file inside {dist}")
    if size is not None and p.stat().st_size != size:
        raise PublishError(f"{rel} is {p.stat().st_size} bytes, the manifest says {size}")
    if sha is not None and sha256_file(p) != sha:
        raise PublishError(f"{rel} does not match its sha256 in the manifest")
    return p


def read_export(dist: str | Path, targets: list[str] | None = None) -> Iterator[tuple[str, str, object]]:
    """Yield ("backbone", target, (body, [BundleFile])) then ("memory", target, (task, Path, sha)) per file."""
    dist = Path(dist)
    try:
        manifest = load_dist_manifest(dist)
    except FormatError as e:
        raise PublishError(f"{dist}/manifest.json: {e}") from None
    chosen = [t for t in manifest["targets"] if targets is None or t in targets]
    for target in chosen:
        body = backbone_description(manifest, target)
        files = [BundleFile(b["path"], _checked(dist, f["path"], f["sha256"], f["bytes"]), f["sha256"], f["bytes"])
                 for b, f in zip(body["files"], manifest["targets"][target]["files"], strict=True)]
        yield "backbone", target, (body, files)
    for task, t in sorted(manifest.get("tasks", {}).items()):
        for target in chosen:
            f = t.get("files", {}).get(target)
            if f:
                yield "memory", target, (task, _checked(dist, f["path"], f["sha256"], f.get("bytes")), f["sha256"])


def publish_http(dist: str | Path, server: str, token: str, targets: list[str] | None = None,
                 log=print) -> list[dict]:
    import requests

    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    server = server.rstrip("/")
    results = []

    def check(r):
        if r.status_code >= 400:
            try:
                msg = r.json().get("message", r.text)
            except ValueError:
                msg = r.text
            raise PublishError(f"{r.request.method} {r.url}: {r.status_code} {msg}")
        return r

    for kind, target, item in read_export(dist, targets):
        if kind == "backbone":
            body, files = item
            for f in files:
                if s.head(f"{server}/blobs/{f.sha256}", timeout=30).status_code == 200:
                    continue  # already stored (content-addressed): skip the upload
                with open(f.local, "rb") as fh:
                    check(s.put(f"{server}/blobs/{f.sha256}", data=fh, timeout=600,
                                headers={"Content-Length": str(f.size)}))
                log(f"uploaded {target}/{f.path} ({f.size} bytes)")
            r = check(s.post(f"{server}/backbone/{target}", json=body, timeout=60)).json()
        else:
            task, local, sha = item
            r = check(s.post(f"{server}/memories/{task}", params={"target": target}, data=local.read_bytes(),
                             headers={"X-Content-SHA256": sha}, timeout=120)).json()
        results.append({"kind": kind, **r})
        log(f"{kind} {r.get('task', '')} {target}: version {r['version']}"
            f" ({'new' if r['created'] else 'unchanged'})".replace("  ", " "))
    return results


def publish_local(dist: str | Path, targets: list[str] | None = None, log=print) -> list[dict]:
    """Publish into the current app's instance (needs an app context): same validation as HTTP."""
    from .db import get_store
    from .publish import publish_memory, register_backbone

    results = []
    for kind, target, item in read_export(dist, targets):
        if kind == "backbone":
            body, files = item
            for f in files:
                with open(f.local, "rb") as fh:
                    staged = get_store().stage(fh, f.size, 1 << 62)
                if staged.sha256 != f.sha256:
                    staged.discard()
                    raise PublishError(f"{f.local} changed while publishing")
                staged.commit()
            r = register_backbone(target, body)
        else:
            task, local, sha = item
            with open(local, "rb") as fh:
                staged = get_store().stage(fh, local.stat().st_size, 1 << 62)
            r = publish_memory(staged, task, target, sha)
        results.append({"kind": kind, **r})
        log(f"{kind} {r.get('task', '')} {target}: version {r['version']}"
            f" ({'new' if r['created'] else 'unchanged'})".replace("  ", " "))
    return results


@click.command("gc")
@click.option("--min-age-s", default=3600.0, show_default=True,
              help="keep younger blobs (uploads of a bundle that is being registered right now)")
@click.option("--dry-run", is_flag=True, help="only list what would be deleted")
def gc_command(min_age_s: float, dry_run: bool) -> None:
    """Delete stored blobs that no registry row (of any version) names. Meant for a quiet moment: a blob re-used
    by a publish while gc runs is kept by its refreshed age, but run it when nobody publishes to be sure."""
    from . import registry
    from .db import get_db, get_store

    removed = get_store().gc(registry.referenced_blobs(get_db()), min_age_s, dry_run)
    for sha in removed:
        click.echo(("would delete " if dry_run else "deleted ") + sha)
    click.echo(f"{len(removed)} unreferenced blob(s) {'found' if dry_run else 'deleted'}")


@click.command("publish")
@click.argument("dist", type=click.Path(exists=True, file_okay=False))
@click.option("--target", "targets", multiple=True, help="only these targets (default: all in the manifest)")
def publish_command(dist: str, targets: tuple[str, ...]) -> None:
    """Publish an export folder into this server's registry and blob store."""
    from .errors import ApiError

    try:
        publish_local(dist, list(targets) or None, log=click.echo)
    except PublishError as e:
        raise click.ClickException(str(e)) from None
    except ApiError as e:
        raise click.ClickException(e.message + (f" [{e.extra['code']}]" if "code" in e.extra else "")) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("publish", help="publish an export folder over HTTP")
    p.add_argument("dist")
    p.add_argument("--server", required=True)
    p.add_argument("--token", default=os.environ.get("SPARTAN_EDGE_PUBLISH_TOKEN"))
    p.add_argument("--target", dest="targets", action="append")
    args = ap.parse_args(argv)
    if not args.token:
        print("error: no token (--token or SPARTAN_EDGE_PUBLISH_TOKEN)", file=sys.stderr)
        return 2
    try:
        publish_http(args.dist, args.server, args.token, args.targets)
    except PublishError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: cannot reach {args.server}: {e}", file=sys.stderr)
        return 1
    return 0
