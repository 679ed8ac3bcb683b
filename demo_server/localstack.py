"""The scaled-out server on one machine's loopback: PostgreSQL, N gunicorn instances, nginx in front.

    python -m demo_server.localstack --instances 2 --port 8080 [--dist dist]     # scripts/scaleout.sh runs this

Every process runs in the foreground of a scratch folder and stops with this one; nothing is installed or
daemonised. The tests and benchmarks/server_load.py start the same pieces from here. PostgreSQL refuses to run as
root, so under root its processes run as the `postgres` system user (Debian's package creates it).
`nginx_config` is also the production template (docs/server.md: what changes there).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .offload import PASS_HEADERS

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(probe, proc: subprocess.Popen, what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not probe():
        if proc.poll() is not None or time.time() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start (log {log}):\n{tail}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:  # it exited just now
            proc.wait()


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


# --- PostgreSQL ------------------------------------------------------------------------------------------------

def postgres_bindir() -> Path | None:
    """Where initdb and postgres are: on PATH, or Debian's /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(os.path.realpath(found)).parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.access(f"{d}/initdb", os.X_OK) and os.access(f"{d}/postgres", os.X_OK):
            return Path(d)
    return None


class Postgres:
    """A throwaway cluster: initdb in a fresh folder, `postgres` in the foreground on 127.0.0.1:<port>, trust auth
    on loopback only. `durable=False` (tests) turns fsync off; the benchmark and scaleout script keep it on."""

    def __init__(self, port: int | None = None, durable: bool = True) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries not found (Debian: apt-get install postgresql)")
        self.port = port or free_port()
        # Outside pytest's 0700 temp tree: the postgres user must be able to reach its data folder.
        self.root = Path(tempfile.mkdtemp(prefix="spartan-pg-"))
        self.data = self.root / "data"
        user = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("PostgreSQL refuses to run as root, and there is no 'postgres' user to run it as"
                                   " (Debian's postgresql package creates one)") from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
        self.log = self.root / "postgres.log"
        subprocess.run([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-instructions", "--no-sync"], check=True, capture_output=True,
                       cwd=self.root, **as_user)
        opts = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
                "-c", "max_connections=200"] + ([] if durable else ["-c", "fsync=off", "-c", "synchronous_commit=off"])
        self.proc = subprocess.Popen([str(bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), *opts],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, cwd=self.root,
                                     start_new_session=True, **as_user)
        _wait(self._ready, self.proc, "postgres", self.log)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url(), connect_timeout=1).close()
            return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')  # name comes from the caller's code, not from a request
        return self.url(name)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # "fast" shutdown: roll back open transactions, exit cleanly
        shutil.rmtree(self.root, ignore_errors=True)


# --- gunicorn instances ----------------------------------------------------------------------------------------

class Gunicorn:
    """One app instance: gunicorn (gthread workers) on 127.0.0.1:<port>. `env` adds SPARTAN_EDGE_* settings."""

    def __init__(self, instance: Path, env: dict[str, str] | None = None, token: str | None = None,
                 workers: int = 2, threads: int = 4, port: int | None = None, log: Path | None = None) -> None:
        self.instance, self.port = Path(instance), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.instance.mkdir(parents=True, exist_ok=True)
        full = {**os.environ, "SPARTAN_EDGE_INSTANCE": str(self.instance), "PYTHONPATH": str(REPO), **(env or {})}
        full.pop("SPARTAN_EDGE_PUBLISH_TOKEN", None)
        if token:
            full["SPARTAN_EDGE_PUBLISH_TOKEN"] = token
        self.log = Path(log or self.instance.parent / f"gunicorn-{self.port}.log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "-k", "gthread", "--threads", str(threads),
             "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "2", "demo_server:create_app()"],
            cwd=REPO, env=full, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait(self._ready, self.proc, "gunicorn", self.log)

    def _ready(self) -> bool:
        import http.client

        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            c.request("GET", "/healthz")
            return c.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.proc)

    def kill(self) -> None:
        """SIGKILL the whole instance (master and workers): a crash, not a shutdown."""
        _stop(self.proc, signal.SIGKILL)


# --- nginx -----------------------------------------------------------------------------------------------------

# (status codes, API error name, message) of what nginx refuses itself: a path that climbs above /, a NUL byte, a huge
# URL or body, no instance answering.
NGINX_ERRORS = [((400,), "bad_request", "malformed request or path"), ((404,), "not_found", "not found"),
                ((413,), "too_large", "request body too large"), ((414,), "uri_too_long", "request URI too long"),
                ((502, 504), "bad_gateway", "no app instance answered; retry")]


def nginx_config(port: int, upstreams: list[int], blob_dir: Path | str, workdir: Path | str,
                 blob_location: str = "/_blobs/", worker_processes: int = 1) -> str:
    """nginx in front of the app instances, sending blob bodies itself when Flask answers with X-Accel-Redirect.

    Production differs in: `listen 443 ssl` with certificates (and a plain-HTTP redirect), `user www-data`, real
    upstream addresses, log paths; BLOB_DIR readable by nginx's user (blobs are written 0644)."""
    w = Path(workdir)
    user = "user root root;  # the loopback stack runs as root here; production: user www-data" \
        if os.geteuid() == 0 else ""
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams)
    # An instance that is down or dies mid-request: GET/HEAD go to the next one. An upload it was receiving gets a
    # 502 (its streamed body cannot be replayed); publishing is idempotent (the same bytes again are "unchanged"), so
    # the publisher simply retries.
    proxy = """\
            proxy_pass http://spartan_edge;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 2s;"""
    error_pages = "\n".join(
        f"        error_page {' '.join(map(str, codes))} /_errors/{codes[0]};\n"
        f"        location = /_errors/{codes[0]} {{ internal; default_type application/json; return {codes[0]} "
        f"'{{\"error\": \"{name}\", \"message\": \"{message}\", \"status\": {codes[0]}}}'; }}"
        for codes, name, message in NGINX_ERRORS)
    passed = "\n".join(f"            add_header {h} $upstream_http_{h.lower().replace('-', '_')};"
                       for h in PASS_HEADERS)
    return f"""\
{user}
worker_processes {worker_processes};
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {w}/client_body;
    proxy_temp_path {w}/proxy;
    fastcgi_temp_path {w}/fastcgi;
    uwsgi_temp_path {w}/uwsgi;
    scgi_temp_path {w}/scgi;
    sendfile on;
    tcp_nopush on;
    server_tokens off;
    default_type application/octet-stream;

    upstream spartan_edge {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        # Flask enforces the body limits (MAX_MEMORY_BYTES, MAX_BLOB_BYTES) and streams uploads to its staging
        # folder, hashing as they arrive: nginx passes them straight through.
        client_max_body_size 0;
        proxy_request_buffering off;

        # Requests nginx itself refuses get the API's JSON error shape too (NGINX_ERRORS).
{error_pages}

        # Registering a bundle is a JSON body (MAX_JSON_BYTES, 1 MiB): nginx refuses a larger one itself, because
        # an instance that answers 413 and closes while nginx is still streaming the body turns into a 502.
        location ~ ^/backbone/[^/]+$ {{
            client_max_body_size 1m;
{proxy}
        }}
        location / {{
{proxy}
        }}
        # Reached only through X-Accel-Redirect (offload.py): Flask has already decided this is a full 200, so
        # nginx must not decide anything again: no validators of its own, no ranges; Flask's headers are kept.
        location {blob_location} {{
            internal;
            alias {Path(blob_dir).resolve()}/;
            etag off;
            if_modified_since off;
            max_ranges 0;
{passed}
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, upstreams: list[int], blob_dir: Path | str, port: int | None = None,
                 worker_processes: int = 1) -> None:
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
        if nginx is None:
            raise RuntimeError("nginx not found (Debian: apt-get install nginx)")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = Path(tempfile.mkdtemp(prefix="spartan-nginx-"))
        conf = self.root / "nginx.conf"
        conf.write_text(nginx_config(self.port, upstreams, blob_dir, self.root, worker_processes=worker_processes))
        self.log = self.root / "error.log"
        self.proc = subprocess.Popen([nginx, "-p", str(self.root), "-c", str(conf), "-e", str(self.log),
                                      "-g", "daemon off;"], stdout=open(self.root / "stdout.log", "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _wait(lambda: _port_open(self.port), self.proc, "nginx", self.log)

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)  # fast shutdown: this stack is stopped only when nothing needs it
        shutil.rmtree(self.root, ignore_errors=True)


# --- the whole stack -------------------------------------------------------------------------------------------

class Stack:
    """PostgreSQL (or a given database), `instances` gunicorn instances sharing it and one blob folder, nginx."""

    def __init__(self, root: Path, instances: int = 2, token: str | None = None, database: str | None = None,
                 port: int | None = None, workers: int = 2, threads: int = 4, durable: bool = True,
                 extra_env: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.pg = None if database else Postgres(durable=durable)
        self.database = database or self.pg.create_database("spartan_edge")
        self.instance = self.root / "instance"  # shared: blobs/ (the one blob store); no SQLite file is used
        self.env = {"SPARTAN_EDGE_DATABASE": self.database, "SPARTAN_EDGE_BLOB_OFFLOAD": "nginx",
                    "SPARTAN_EDGE_TRUSTED_PROXIES": "1", **(extra_env or {})}
        self.apps: list[Gunicorn] = []
        self.nginx = None
        try:
            for i in range(instances):
                self.apps.append(Gunicorn(self.instance, self.env, token, workers, threads,
                                          log=self.root / f"app{i}.log"))
            self.nginx = Nginx([a.port for a in self.apps], self.instance / "blobs", port)
        except BaseException:
            self.stop()
            raise
        self.url, self.port = self.nginx.url, self.nginx.port

    def stop(self) -> None:
        if self.nginx:
            self.nginx.stop()
        for app in self.apps:  # all at once: each takes up to its graceful timeout
            if app.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(app.proc.pid, signal.SIGTERM)
        for app in self.apps:
            app.stop()
        if self.pg:
            self.pg.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m demo_server.localstack", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--port", type=int, default=8080, help="nginx's port on 127.0.0.1")
    ap.add_argument("--root", help="folder for the blob store and logs (default: a new temporary folder)")
    ap.add_argument("--database", default=os.environ.get("SPARTAN_EDGE_DATABASE"),
                    help="an existing postgresql:// URL (default: start a throwaway PostgreSQL)")
    ap.add_argument("--dist", help="publish this export folder once the stack is up")
    args = ap.parse_args(argv)
    token = os.environ.get("SPARTAN_EDGE_PUBLISH_TOKEN") or os.urandom(18).hex()
    root = Path(args.root or tempfile.mkdtemp(prefix="spartan-stack-"))
    stack = Stack(root, args.instances, token, args.database, args.port)
    try:
        print(f"nginx       {stack.url}  (console: {stack.url}/)")
        for a in stack.apps:
            print(f"instance    {a.url}  log {a.log}")
        print(f"registry    {stack.database}\nblobs       {stack.instance / 'blobs'}\npublish token {token}")
        if args.dist:
            r = subprocess.run([sys.executable, "-m", "demo_server", "publish", args.dist, "--server", stack.url,
                                "--token", token], cwd=REPO)
            if r.returncode:
                return r.returncode
        print("Ctrl-C stops everything.", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
