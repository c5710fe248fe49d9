"""Harness for the UI end-to-end test: a real `dg dev` (webserver + daemon; what `make ui` runs) on a
throwaway instance, its GraphQL API, and Debian's Chromium under Playwright. No assertions here."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from adrel_pipeline_tests.conftest import dagster_home

REPO = Path(__file__).resolve().parents[2]
# The venv's `dg` (dagster-dg-cli), whichever interpreter runs the tests.
DG_CLI = str(Path(sys.executable).parent / "dg")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

LOCATION = "adrel_pipeline"
REPOSITORY = "__repository__"  # the name Dagster gives the repository of a Definitions object
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def free_port() -> int:
    # A small race: another process could take the port before dagster binds it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Runs `dg dev` with SIGINT back to its default. A shell without job control starts background
# jobs with SIGINT ignored and children inherit that; `dg dev` maps SIGTERM onto its SIGINT
# handler, so it would then ignore SIGTERM as well and never shut its children down cleanly. (An
# exec'ing wrapper rather than preexec_fn, which is unsafe once Playwright has started threads.)
_WITH_DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execv(sys.argv[1], sys.argv[1:])")


def stop_process_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM ``proc``'s process group (dg dev, dagster-webserver and mlflow server shut their
    children down on it) and wait up to ``timeout``; then whatever is left in the group (a hung
    child, an orphaned run worker) is killed outright."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class DagsterDev:
    """`dg dev -w workspace.yaml` (as `make ui`) for the project's workspace, on a fresh DAGSTER_HOME under ``tmp``."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.home = tmp / "dagster_home"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "dagster-dev.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> DagsterDev:
        dagster_home(self.home)  # the instance settings `make ui` uses, in a throwaway home
        env = {**os.environ,
               "DAGSTER_HOME": str(self.home),
               # The project's state folder and MLflow store (runs, registered models) in tmp too:
               # nothing is written to the project's .adrel/.
               "ADREL_STATE_DIR": str(self.tmp),
               "MLFLOW_TRACKING_URI": f"sqlite:///{self.tmp}/mlflow.db",
               "PYTHONUNBUFFERED": "1"}  # the log tail in an error message is up to date
        with open(self.log_path, "wb") as log:  # a file, not a pipe: nobody drains a pipe while tests run
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WITH_DEFAULT_SIGINT,
                 DG_CLI, "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(self.port)],
                cwd=self.tmp, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Own process group: stop() reaches the webserver, daemon, code servers and run workers.
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dg dev exited with code {self.proc.returncode} before serving:\n"
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"dg dev did not answer {self.url}/server_info within {timeout:.0f} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.5)
        # The webserver can answer before the code location has loaded; a location that fails to
        # import (broken pipeline code) shows up here with its Python error.
        while True:
            entry = self.location_entry()
            if entry["loadStatus"] == "LOADED":
                result = entry["locationOrLoadError"] or {}
                if result.get("__typename") == "PythonError":
                    raise RuntimeError(f"code location {LOCATION!r} failed to load:\n{result['message']}\n"
                                       + "".join(result.get("stack") or []))
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"code location {LOCATION!r} still {entry['loadStatus']} after {timeout:.0f} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.5)

    def location_entry(self) -> dict:
        data = self.graphql("""{ workspaceOrError { __typename
            ... on Workspace { locationEntries { name loadStatus
                locationOrLoadError { __typename ... on PythonError { message stack } } } }
            ... on PythonError { message } } }""")["workspaceOrError"]
        if data["__typename"] != "Workspace":
            raise RuntimeError(f"workspace query failed: {data}")
        entries = {e["name"]: e for e in data["locationEntries"]}
        if LOCATION not in entries:
            raise RuntimeError(f"no code location {LOCATION!r} in the workspace, only {sorted(entries)}")
        return entries[LOCATION]

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None:
            return
        stop_process_group(self.proc, timeout)
        self.proc = None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as err:
            return f"(no log: {err})"

    # --- GraphQL -----------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                payload = json.load(resp)
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"GraphQL HTTP {err.code}: {err.read().decode(errors='replace')[:2000]}") from err
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {json.dumps(payload['errors'])[:2000]}")
        return payload["data"]

    def launch_run(self, job: str, run_config: dict, tags: dict[str, str], assets: list[str] | None = None) -> str:
        """Queues a run of ``job`` (the daemon launches it), of ``assets`` alone when given (the UI's
        Materialize: the implicit ``__ASSET_JOB`` with an asset selection); returns its id."""
        selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job}
        if assets is not None:
            selector["assetSelection"] = [{"path": [a]} for a in assets]
        result = self.graphql("""mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
                __typename
                ... on LaunchRunSuccess { run { runId } }
                ... on RunConfigValidationInvalid { errors { message } }
                ... on PythonError { message stack }
                ... on Error { message } } }""",
            {"params": {"selector": selector, "runConfigData": run_config,
                        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}})
        launched = result["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun failed: {json.dumps(launched, indent=1)[:3000]}")
        return launched["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        run = self.graphql("query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } "
                           "... on Error { message } } }", {"id": run_id})["runOrError"]
        if run["__typename"] != "Run":
            raise RuntimeError(f"run {run_id}: {run}")
        return run["status"]

    def wait_for_run(self, run_id: str, timeout: float = 300) -> str:
        """The run's final status (SUCCESS, FAILURE or CANCELED)."""
        deadline = time.monotonic() + timeout
        while (status := self.run_status(run_id)) not in FINISHED:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dg dev died while run {run_id} was {status}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {status} after {timeout:.0f} s\n"
                                   f"{self.run_errors(run_id)}\n--- dg dev ---\n{self.log_tail()}")
            time.sleep(1)
        return status

    def run_errors(self, run_id: str) -> str:
        """The run's error-level messages and error events, for a failure message."""
        logs = self.graphql("""query($id: ID!) { logsForRun(runId: $id) { __typename
                ... on EventConnection { events { __typename
                    ... on MessageEvent { message level stepKey }
                    ... on ErrorEvent { error { message } } } }
                ... on PythonError { message } } }""", {"id": run_id})["logsForRun"]
        if logs["__typename"] != "EventConnection":
            return f"(no event log: {logs})"
        lines = []
        for event in logs["events"]:
            error = (event.get("error") or {}).get("message")
            if error or event.get("level") in ("ERROR", "CRITICAL"):
                lines.append(f"[{event['__typename']} {event.get('stepKey') or '-'}] {event.get('message')}"
                             + (f"\n    {error.strip()}" if error else ""))
        return "\n".join(lines) or "(no error events)"

    def asset_metadata(self, asset: str, partition: str | None = None) -> dict:
        """Metadata of the latest materialization of ``asset`` (of ``partition`` when given): numbers and text."""
        data = self.graphql("""query($key: AssetKeyInput!, $partitions: [String!]) { assetOrError(assetKey: $key) {
                __typename ... on Asset { assetMaterializations(partitions: $partitions, limit: 1) {
                    partition metadataEntries { label __typename
                        ... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue }
                        ... on TextMetadataEntry { text } } } } } }""",
                            {"key": {"path": [asset]},
                             "partitions": None if partition is None else [partition]})["assetOrError"]
        if data["__typename"] != "Asset" or not data["assetMaterializations"]:
            raise RuntimeError(f"no materialization of {asset} for {partition}: {data}")
        entries = data["assetMaterializations"][0]["metadataEntries"]
        return {e["label"]: e.get("floatValue", e.get("intValue", e.get("text"))) for e in entries}
