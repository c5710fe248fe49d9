"""The real deployment on this machine, all on 127.0.0.1: `make deploy-up` / `make deploy-down`.

    python scripts/deploy.py up [--state-dir DIR] [--env-file FILE]
    python scripts/deploy.py down [--state-dir DIR] [--drop]
    python scripts/deploy.py status [--state-dir DIR]
    eval "$(python scripts/deploy.py env)"    # this shell's Dagster CLI then talks to the deployment

`up` creates what is missing (the PostgreSQL databases of the Dagster instance and of MLflow, the
RabbitMQ vhost, $DAGSTER_HOME with config/deployment/dagster.yaml, the instance's schema), then
starts each process that is not already running, in its own session with a pid file and a log
under ``<state>/run`` and ``<state>/logs``, and waits until each answers:

* ``mlflow server`` (PostgreSQL backend store, artifacts under ``<state>/mlartifacts`` served
  over HTTP: ``--serve-artifacts``);
* ``dagster-webserver`` and ``dagster-daemon`` (queued run coordinator, run monitoring);
* ``CELERY_WORKERS`` Celery workers (``dagster-celery worker start``), one step at a time each.

`up` is idempotent: run again, it restarts only what died. Settings come from
config/deployment/deploy.env, overridden by the environment. `down` stops every process (SIGTERM
to its session, SIGKILL after a grace period); `--drop` also drops the databases and the vhost.
The state (``<state>/deploy.json``: pids, URLs, settings) lets tests find the processes.

No adrel_pipeline import: the processes load the code location themselves (workspace.yaml).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "deployment"
BIN = Path(sys.executable).parent
LOCATION = "adrel_pipeline"
START_TIMEOUT_S = 180


# --- settings ------------------------------------------------------------------------------------

def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def settings(env_file: Path, state: Path) -> dict[str, str]:
    """The deployment's environment: the env file, the caller's environment over it, and what follows."""
    env = {**os.environ}
    for key, value in read_env_file(env_file).items():
        env.setdefault(key, value)
    pg_auth = env["DAGSTER_PG_USERNAME"] + (f":{env['DAGSTER_PG_PASSWORD']}" if env["DAGSTER_PG_PASSWORD"] else "")
    pg = f"{pg_auth}@{env['DAGSTER_PG_HOST']}:{env['DAGSTER_PG_PORT']}"
    # +psycopg2: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed.
    env.setdefault("MLFLOW_BACKEND_STORE_URI", f"postgresql+psycopg2://{pg}/{env['MLFLOW_PG_DB']}")
    env.setdefault("ADREL_CELERY_BROKER", f"{env['RABBITMQ_URL'].rstrip('/')}/{env['RABBITMQ_VHOST']}")
    env.update({
        "DAGSTER_HOME": str(state / "dagster_home"),
        # Every process: the run workers and Celery workers record to the server, steps go to Celery.
        "ADREL_STATE_DIR": str(state),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{env['MLFLOW_PORT']}",
        "ADREL_EXECUTOR": "celery",
        "ADREL_CELERY_CONFIG": str(CONFIG / "celery.yaml"),
        "PYTHONUNBUFFERED": "1",
        # dagster-celery starts `celery` from PATH: the venv's.
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    })
    return env


def urls(env: dict[str, str]) -> dict[str, str]:
    return {"dagster": f"http://127.0.0.1:{env['WEBSERVER_PORT']}", "mlflow": env["MLFLOW_TRACKING_URI"]}


# --- services the deployment needs ---------------------------------------------------------------

def _pg_connect(env: dict[str, str], db: str = "postgres"):
    import psycopg2

    return psycopg2.connect(host=env["DAGSTER_PG_HOST"], port=int(env["DAGSTER_PG_PORT"]),
                            user=env["DAGSTER_PG_USERNAME"], password=env["DAGSTER_PG_PASSWORD"] or None,
                            dbname=db, connect_timeout=5)


def databases(env: dict[str, str]) -> list[str]:
    return [env["DAGSTER_PG_DB"], env["MLFLOW_PG_DB"]]


def create_databases(env: dict[str, str]) -> None:
    conn = _pg_connect(env)
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            for db in databases(env):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{db}"')
    finally:
        conn.close()


def drop_databases(env: dict[str, str]) -> None:
    conn = _pg_connect(env)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for db in databases(env):
                cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        conn.close()


def _rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=check)


def create_vhost(env: dict[str, str]) -> None:
    vhost = env["RABBITMQ_VHOST"]
    if vhost in ("", "/"):
        return
    if vhost not in _rabbitmqctl("list_vhosts").stdout.split():
        _rabbitmqctl("add_vhost", vhost)
    user = env["RABBITMQ_URL"].split("://", 1)[1].split(":", 1)[0]
    _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")


def drop_vhost(env: dict[str, str]) -> None:
    if env["RABBITMQ_VHOST"] not in ("", "/"):
        _rabbitmqctl("delete_vhost", env["RABBITMQ_VHOST"], check=False)


def dagster_home(env: dict[str, str]) -> None:
    """$DAGSTER_HOME with the deployment's dagster.yaml, and the instance's schema created once,
    here, before the webserver, daemon and workers would race to create it."""
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text((CONFIG / "dagster.yaml").read_text())
    code = "import dagster as dg; dg.DagsterInstance.get().dispose()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


# --- processes -----------------------------------------------------------------------------------

def commands(env: dict[str, str], state: Path) -> dict[str, list[str]]:
    workspace = str(REPO / "workspace.yaml")
    out = {
        "mlflow": [str(BIN / "mlflow"), "server", "--backend-store-uri", env["MLFLOW_BACKEND_STORE_URI"],
                   "--artifacts-destination", str(state / "mlartifacts"), "--serve-artifacts",
                   "--host", "127.0.0.1", "--port", env["MLFLOW_PORT"], "--workers", env["MLFLOW_WORKERS"]],
        "webserver": [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", env["WEBSERVER_PORT"]],
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", workspace],
    }
    for i in range(1, int(env["CELERY_WORKERS"]) + 1):
        # The solo pool runs each step in the worker's own process (its pid is in the step's events);
        # --pidfile records that process, not the dagster-celery wrapper that starts it.
        out[f"worker{i}"] = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                             "-y", str(CONFIG / "celery.yaml"), "-n", f"worker{i}", "--",
                             "--pool=solo", f"--pidfile={state / 'run' / f'worker{i}.celery.pid'}"]
    return out


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not reaped by its parent) is not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def start(name: str, cmd: list[str], env: dict[str, str], state: Path) -> int:
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "run").mkdir(parents=True, exist_ok=True)
    with open(state / "logs" / f"{name}.log", "ab") as log:
        # Own session: `down` signals the whole group (the webserver's and daemon's code servers,
        # run workers, the worker wrapper's celery process).
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (state / "run" / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def log_tail(state: Path, name: str, chars: int = 3000) -> str:
    try:
        return (state / "logs" / f"{name}.log").read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _get(url: str, data: bytes | None = None) -> bytes | None:
    try:
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.read() if resp.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None


def _graphql(url: str, query: str) -> dict | None:
    body = _get(f"{url}/graphql", json.dumps({"query": query}).encode())
    return json.loads(body).get("data") if body else None


def ready(name: str, env: dict[str, str], state: Path) -> bool:
    """Whether ``name`` answers: the server's health URL, the code location loaded, the daemon's
    run queue heartbeat, a worker's "ready" line."""
    if name == "mlflow":
        return _get(f"{env['MLFLOW_TRACKING_URI']}/health") is not None
    dagster = urls(env)["dagster"]
    if name == "webserver":
        data = _graphql(dagster, "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                                 "locationOrLoadError { __typename } } } } }")
        entries = {e["name"]: e for e in ((data or {}).get("workspaceOrError") or {}).get("locationEntries", [])}
        entry = entries.get(LOCATION)
        if entry and entry["loadStatus"] == "LOADED" and entry["locationOrLoadError"]["__typename"] == "PythonError":
            raise RuntimeError(f"code location {LOCATION} failed to load: see {state / 'logs' / 'webserver.log'}")
        return bool(entry and entry["loadStatus"] == "LOADED")
    if name == "daemon":
        data = _graphql(dagster, "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
        statuses = ((data or {}).get("instance") or {}).get("daemonHealth", {}).get("allDaemonStatuses", [])
        return any(s["daemonType"] == "QUEUED_RUN_COORDINATOR" and s["healthy"] for s in statuses)
    pid = read_pid(state / "run" / f"{name}.celery.pid")
    return alive(pid) and " ready." in log_tail(state, name, 100_000)


def up(env: dict[str, str], state: Path) -> dict:
    state.mkdir(parents=True, exist_ok=True)
    create_databases(env)
    create_vhost(env)
    dagster_home(env)
    pids = {}
    for name, cmd in commands(env, state).items():
        pid = read_pid(state / "run" / f"{name}.pid")
        if alive(pid) and (not name.startswith("worker") or alive(read_pid(state / "run" / f"{name}.celery.pid"))):
            pids[name] = pid
            continue
        if pid:
            stop_group(pid)  # a worker wrapper whose celery process died
        if name.startswith("worker"):
            (state / "run" / f"{name}.celery.pid").unlink(missing_ok=True)
            (state / "logs" / f"{name}.log").unlink(missing_ok=True)  # its "ready" line must be the new one's
        pids[name] = start(name, cmd, env, state)
    # The webserver needs the daemon's heartbeat to report it; wait for the servers first.
    pending = ["mlflow", "webserver", *[n for n in pids if n.startswith("worker")], "daemon"]
    deadline = time.monotonic() + START_TIMEOUT_S
    while pending:
        name = pending[0]
        if not alive(pids[name]):
            raise RuntimeError(f"{name} exited while starting:\n{log_tail(state, name)}")
        if ready(name, env, state):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not ready after {START_TIMEOUT_S} s:\n{log_tail(state, name)}")
        time.sleep(0.5)
    workers = {n: read_pid(state / "run" / f"{n}.celery.pid") for n in pids if n.startswith("worker")}
    record = {"urls": urls(env), "pids": pids, "celery_pids": workers, "broker": env["ADREL_CELERY_BROKER"],
              "dagster_home": env["DAGSTER_HOME"], "mlflow_backend_store_uri": env["MLFLOW_BACKEND_STORE_URI"],
              "databases": databases(env), "rabbitmq_vhost": env["RABBITMQ_VHOST"]}
    (state / "deploy.json").write_text(json.dumps(record, indent=1))
    return record


def stop_group(pid: int, grace_s: float = 20) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        if not alive(pid):
            break
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)  # whatever is left of the group (a hung child, a run worker)
    except ProcessLookupError:
        pass


def down(env: dict[str, str], state: Path, drop: bool) -> None:
    run = state / "run"
    names = sorted(p.stem for p in run.glob("*.pid") if not p.stem.endswith(".celery")) if run.exists() else []
    # Workers and the daemon first, so nothing is mid-step when the servers go.
    for name in sorted(names, key=lambda n: (not n.startswith("worker"), n != "daemon", n)):
        pid = read_pid(run / f"{name}.pid")
        if pid:
            stop_group(pid)
        (run / f"{name}.pid").unlink(missing_ok=True)
        (run / f"{name}.celery.pid").unlink(missing_ok=True)
    (state / "deploy.json").unlink(missing_ok=True)
    if drop:
        drop_databases(env)
        drop_vhost(env)


def status(env: dict[str, str], state: Path) -> dict[str, bool]:
    return {name: alive(read_pid(state / "run" / f"{name}.pid")) and ready(name, env, state)
            for name in commands(env, state)}


# What a Dagster CLI (`dagster job launch`, `dg launch`) needs to act on the deployment's instance.
CLI_ENV = ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD",
           "DAGSTER_PG_DB", "ADREL_STATE_DIR", "MLFLOW_TRACKING_URI", "ADREL_EXECUTOR", "ADREL_CELERY_CONFIG",
           "ADREL_CELERY_BROKER")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--state-dir", type=Path, default=REPO / ".adrel" / "deploy")
    parser.add_argument("--env-file", type=Path, default=CONFIG / "deploy.env")
    parser.add_argument("--drop", action="store_true", help="down: also drop the databases and the vhost")
    args = parser.parse_args(argv)
    state = args.state_dir.resolve()
    env = settings(args.env_file, state)
    if args.command == "up":
        record = up(env, state)
        print(f"Dagster UI  {record['urls']['dagster']}\nMLflow UI   {record['urls']['mlflow']}\n"
              f"processes   {', '.join(f'{k} ({v})' for k, v in record['pids'].items())}\n"
              f"logs        {state / 'logs'}")
    elif args.command == "down":
        down(env, state, args.drop)
    elif args.command == "env":
        print("\n".join(f"export {key}={shlex.quote(env[key])}" for key in CLI_ENV))
    else:
        states = status(env, state)
        for name, ok in states.items():
            print(f"{name:10s} {'up' if ok else 'DOWN'}")
        return 0 if all(states.values()) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
