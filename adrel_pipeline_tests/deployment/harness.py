"""Harness for the deployment tests: the real deployment of `make deploy-up` (scripts/deploy.py) on
free ports, with its own PostgreSQL databases and RabbitMQ vhost, a throwaway state folder and a
small world; its GraphQL API (the UI's, via DagsterDev's client), its PostgreSQL tables, and a
spare MLflow server for the store-outage test. No assertions here."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from adrel_pipeline_tests.conftest import SMALL_WORLD
from adrel_pipeline_tests.defs.ui_driver import REPO, DagsterDev, free_port, stop_process_group

DEPLOY = REPO / "scripts" / "deploy.py"
ENV_FILE = REPO / "config" / "deployment" / "deploy.env"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
RABBITMQ = ("127.0.0.1", 5672)


def unreachable_services() -> str | None:
    """Why the deployment cannot come up here (a service or tool missing), or None."""
    try:
        import dagster_celery  # noqa: F401
        import dagster_postgres  # noqa: F401
        import psycopg2
    except ImportError as err:
        return f"the deployment's packages are not installed ({err.name}): pip install -e '.[deploy]'"
    try:
        psycopg2.connect(dbname="postgres", connect_timeout=3, **PG).close()
    except psycopg2.Error as err:
        return f"PostgreSQL at {PG['host']}:{PG['port']} (user {PG['user']}) is unreachable: {' '.join(str(err).split())}"
    try:
        socket.create_connection(RABBITMQ, timeout=3).close()
    except OSError as err:
        return f"the Celery broker, RabbitMQ at {RABBITMQ[0]}:{RABBITMQ[1]}, is unreachable: {err}"
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not on PATH: the test creates its own RabbitMQ vhost with it"
    return None


def pg_connect(db: str):
    import psycopg2

    conn = psycopg2.connect(dbname=db, connect_timeout=5, **PG)
    conn.autocommit = True
    return conn


def pg_rows(db: str, query: str, *params) -> list[tuple]:
    conn = pg_connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
    finally:
        conn.close()


def pg_execute(db: str, *statements: str) -> None:
    conn = pg_connect(db)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


class _Alive:
    """A process started elsewhere, with Popen's poll() (DagsterDev.wait_for_run checks it)."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self) -> int | None:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return -1
        return None


class Deployment(DagsterDev):
    """`scripts/deploy.py up` (what `make deploy-up` runs) under ``tmp``: free ports, databases and a
    vhost of its own (dropped by stop()), ``$ADREL_WORLD`` a small world. GraphQL as DagsterDev."""

    def __init__(self, tmp: Path):
        super().__init__(tmp)
        tag = uuid.uuid4().hex[:8]
        self.state = tmp / "deploy"
        world = tmp / "world.yaml"
        world.write_text("".join(f"{k}: {v}\n" for k, v in SMALL_WORLD.items()))
        self.env = {**os.environ,
                    "WEBSERVER_PORT": str(self.port), "MLFLOW_PORT": str(free_port()), "MLFLOW_WORKERS": "1",
                    "DAGSTER_PG_DB": f"adrel_test_{tag}_dagster", "MLFLOW_PG_DB": f"adrel_test_{tag}_mlflow",
                    "RABBITMQ_VHOST": f"adrel_test_{tag}", "ADREL_WORLD": str(world)}
        self.record: dict = {}

    @property
    def dagster_db(self) -> str:
        return self.env["DAGSTER_PG_DB"]

    @property
    def mlflow_url(self) -> str:
        return self.record["urls"]["mlflow"]

    @property
    def storage(self) -> Path:
        """Where the IO manager writes asset values ($DAGSTER_HOME/storage)."""
        return Path(self.record["dagster_home"]) / "storage"

    def celery_pids(self) -> dict[str, int]:
        return dict(self.record["celery_pids"])

    def _deploy(self, *args: str, timeout: float = 240) -> None:
        proc = subprocess.run([sys.executable, str(DEPLOY), *args, "--state-dir", str(self.state)],
                              check=False, env=self.env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"deploy.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n"
                               f"{self.log_tail()}")

    def start(self, timeout: float = 240) -> Deployment:
        """Brings the deployment up, or back up: only processes that died are started again."""
        try:
            self._deploy("up", timeout=timeout)
        except BaseException:
            self.stop()
            raise
        self.record = json.loads((self.state / "deploy.json").read_text())
        self.url = self.record["urls"]["dagster"]
        self.proc = _Alive(self.record["pids"]["webserver"])
        return self

    def stop(self, timeout: float = 120) -> None:
        self._deploy("down", "--drop", timeout=timeout)
        self.proc = None

    def log_tail(self, chars: int = 1500) -> str:
        logs = sorted((self.state / "logs").glob("*.log")) if (self.state / "logs").exists() else []
        return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-chars:]}" for p in logs) or "(no logs)"

    # --- runs, as the UI launches them ------------------------------------------------------

    def launch_assets(self, assets: list[str], tags: dict[str, str], run_config: dict | None = None) -> str:
        """Queues a run materializing ``assets`` (the UI's Materialize: partition or range tags); returns its id."""
        return self.launch_run("__ASSET_JOB", run_config or {}, tags, assets=assets)

    def run_times(self, run_id: str) -> tuple[float, float]:
        run = self.graphql("query($id: ID!) { runOrError(runId: $id) { ... on Run { startTime endTime } } }",
                           {"id": run_id})["runOrError"]
        return run["startTime"], run["endTime"]

    # --- the instance's PostgreSQL tables ---------------------------------------------------

    def events(self, run_id: str, event_type: str, step_key: str | None = None) -> list[dict]:
        """The run's event log rows of one type, oldest first: step, pid, timestamp, message."""
        rows = pg_rows(self.dagster_db,
                       "SELECT step_key, event::json->'dagster_event'->>'pid', timestamp, event::json->>'user_message', "
                       "event FROM event_logs WHERE run_id = %s AND dagster_event_type = %s "
                       "AND (%s IS NULL OR step_key = %s) ORDER BY id",
                       run_id, event_type, step_key, step_key)
        # The column holds naive UTC datetimes.
        return [{"step": s, "pid": int(p) if p else None, "timestamp": t.replace(tzinfo=dt.UTC).timestamp(),
                 "message": m, "event": json.loads(e)} for s, p, t, m, e in rows]

    def error_messages(self, run_id: str) -> str:
        """Every error recorded in the run's event log, causes included (GraphQL's run_errors shows
        only the outermost message: a resource's failure hides the store's error under it)."""
        out = []

        def chain(error: dict | None) -> None:
            while error:
                out.append(error.get("message") or "")
                error = error.get("cause")

        for (raw,) in pg_rows(self.dagster_db, "SELECT event FROM event_logs WHERE run_id = %s ORDER BY id", run_id):
            data = (json.loads(raw).get("dagster_event") or {}).get("event_specific_data") or {}
            if isinstance(data, dict):
                chain(data.get("error"))
        return "\n".join(out)

    def wait_for_event(self, run_id: str, event_type: str, step_key: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while not (found := self.events(run_id, event_type, step_key)):
            status = self.run_status(run_id)
            if status in ("SUCCESS", "FAILURE", "CANCELED") or time.monotonic() > deadline:
                raise AssertionError(f"no {event_type} of {step_key} in run {run_id} ({status}):\n"
                                     f"{self.run_errors(run_id)}")
            time.sleep(0.2)
        return found[0]


class MlflowServer:
    """A spare `mlflow server` on its own PostgreSQL database (dropped by stop()), as the deployment
    runs it: for a test that takes its database away."""

    def __init__(self, tmp: Path):
        self.db = f"adrel_test_{uuid.uuid4().hex[:8]}_mlflow"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.log_path = tmp / "mlflow-server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> MlflowServer:
        pg_execute("postgres", f'CREATE DATABASE "{self.db}"')
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                 f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{self.db}",
                 "--artifacts-destination", str(self.tmp / "mlartifacts"), "--serve-artifacts",
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return self
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mlflow server did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.3)

    def block_database(self) -> None:
        """Takes the backend store away from the server: no new connections, the open ones ended."""
        pg_execute("postgres", f'ALTER DATABASE "{self.db}" ALLOW_CONNECTIONS false',
                   f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.db}'")

    def unblock_database(self) -> None:
        pg_execute("postgres", f'ALTER DATABASE "{self.db}" ALLOW_CONNECTIONS true')

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc, timeout=20)
            self.proc = None
        pg_execute("postgres", f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
