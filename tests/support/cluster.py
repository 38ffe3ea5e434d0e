"""The documented deployment (docs/deploy.md), as real processes on 127.0.0.1: a throwaway
PostgreSQL cluster, ``redis-server``, N ``chatkeep serve`` replicas on their own ports, and nginx
in front with ``deploy/nginx.conf``. ``make cluster`` runs it (``python -m support.cluster``);
the cluster tests and ``bench/cluster.py`` start it as a fixture and break its parts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from support.postgres import PostgresCluster
from support.server import REPO, ServerProcess, free_port

NGINX_CONF = REPO / "deploy" / "nginx.conf"


def find_tool(name: str, *candidates: str) -> str:
    found = shutil.which(name) or next((c for c in candidates if Path(c).exists()), None)
    if found is None:
        raise RuntimeError(f"{name} not found; run `make system-deps`")
    return found


def nginx_config(run_dir: Path, listen: str, replica_ports: list[int]) -> str:
    """``deploy/nginx.conf`` with its placeholders filled in, nothing else changed."""
    servers = "\n".join(
        f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;" for port in replica_ports
    )
    return (
        NGINX_CONF.read_text()
        .replace("{{RUN_DIR}}", str(run_dir))
        .replace("{{LISTEN}}", listen)
        .replace("{{UPSTREAM_SERVERS}}", servers)
    )


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def redis_server(run_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """``redis-server`` on 127.0.0.1:``port``, no persistence (docs/deploy.md: Redis holds
    nothing that is not in PostgreSQL), listening when this returns."""
    proc = subprocess.Popen(
        [
            find_tool("redis-server", "/usr/bin/redis-server"),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(run_dir),
            "--logfile",
            str(run_dir / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_port(port, 20, proc, "redis-server")
    return proc


class Cluster:
    """PostgreSQL + Redis (optional) + ``replicas`` × ``chatkeep serve`` + nginx."""

    def __init__(
        self,
        run_dir: Path,
        *,
        replicas: int = 3,
        redis: bool = True,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        postgres: PostgresCluster | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.replica_count = replicas
        self.use_redis = redis
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A cluster given by the caller (the benchmark's durable one) is the caller's to stop.
        self.postgres: PostgresCluster | None = postgres
        self._own_postgres = postgres is None
        self.database_url = ""
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0" if redis else ""
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.replicas: list[ServerProcess] = []
        self.nginx_proc: subprocess.Popen[bytes] | None = None

    # ---- the parts

    def env(self) -> dict[str, str]:
        """What every replica gets (docs/deploy.md, /etc/chatkeep/chatkeep.env)."""
        env = {
            "CHATKEEP_DATABASE_URL": self.database_url,
            "CHATKEEP_REDIS_URL": self.redis_url,
            "CHATKEEP_DATA_DIR": str(self.run_dir / "data"),
        }
        env.update(self.extra_env)
        return env

    def start(self) -> Cluster:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o755)  # nginx's workers run as an unprivileged user
        try:
            # synchronous_commit on: a commit chatkeep acknowledged survives a PostgreSQL crash.
            if self.postgres is None:
                self.postgres = PostgresCluster(extra_settings={"synchronous_commit": "on"})
                self.postgres.start()
            self.database_url = self.postgres.create_database(f"chatkeep_{self.port}")
            if self.use_redis:
                self.start_redis()
            ports = [free_port() for _ in range(self.replica_count)]
            for n, replica_port in enumerate(ports):
                self.replicas.append(
                    ServerProcess(
                        self.env(), port=replica_port, log_path=self.run_dir / f"replica{n}.log"
                    )
                )
            for replica in self.replicas:
                replica.start(timeout=60)
            self.start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def start_redis(self) -> None:
        self.redis_proc = redis_server(self.run_dir, self.redis_port)

    def kill_redis(self) -> None:
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.kill()
            self.redis_proc.wait(timeout=10)

    def start_nginx(self, front: int | None = None) -> None:
        """nginx in front of all replicas, or of the first ``front`` of them."""
        self.stop_nginx()
        conf = self.run_dir / "nginx.conf"
        ports = [r.port for r in self.replicas[:front]]
        conf.write_text(nginx_config(self.run_dir, f"127.0.0.1:{self.port}", ports))
        self.nginx_proc = subprocess.Popen(
            [
                find_tool("nginx", "/usr/sbin/nginx"),
                "-p",
                str(self.run_dir),
                "-e",  # before the config is read, too: not the distribution's log directory
                str(self.run_dir / "nginx-error.log"),
                "-c",
                str(conf),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.run_dir / "nginx-stderr.log", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        _wait_port(self.port, 20, self.nginx_proc, "nginx")
        deadline = time.monotonic() + 20
        while httpx.get(f"{self.url}/readyz", timeout=2).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("nginx does not reach the replicas")
            time.sleep(0.05)

    def kill_replica(self, n: int) -> None:
        """SIGKILL: a replica that crashed, no clean-up at all."""
        self.replicas[n].kill()

    def restart_replica(self, n: int) -> None:
        old = self.replicas[n]
        self.replicas[n] = ServerProcess(self.env(), port=old.port, log_path=old.log_path)
        self.replicas[n].start(timeout=60)

    def stop_nginx(self) -> None:
        if self.nginx_proc is not None and self.nginx_proc.poll() is None:
            os.killpg(self.nginx_proc.pid, signal.SIGKILL)
            self.nginx_proc.wait(timeout=10)

    def stop(self) -> None:
        self.stop_nginx()
        for replica in self.replicas:
            replica.kill()
        self.kill_redis()
        if self.postgres is not None and self._own_postgres:
            self.postgres.stop()
            self.postgres = None


def main() -> None:
    parser = argparse.ArgumentParser(description="chatkeep as documented in docs/deploy.md")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--port", type=int, default=0, help="nginx's port (0: a free one)")
    parser.add_argument("--no-redis", action="store_true")
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="chatkeep-cluster-"))
    cluster = Cluster(
        run_dir, replicas=args.replicas, redis=not args.no_redis, port=args.port or None
    )
    cluster.start()
    try:
        print(f"chatkeep cluster: {cluster.url}  (Ctrl-C stops it)", flush=True)
        for n, replica in enumerate(cluster.replicas):
            print(f"  replica {n}: {replica.url}  log {replica.log_path}")
        print(f"  redis: {cluster.redis_url or 'off'}")
        print(f"  postgres: {cluster.database_url}")
        print(f"  nginx config: {run_dir / 'nginx.conf'} (from deploy/nginx.conf)")
        print(
            f"  first account: open {cluster.url}, or: echo 'a long password' |"
            f" CHATKEEP_DATABASE_URL={cluster.database_url} .venv/bin/chatkeep users add alice"
        )
        signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        signal.sigwait(signals)
    finally:
        cluster.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
