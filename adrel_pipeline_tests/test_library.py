"""The library is plain Python: no module outside ``defs/`` and ``definitions.py`` imports Dagster,
and importing one never loads the code location."""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import adrel_pipeline

ROOT = Path(adrel_pipeline.__file__).parent


def library_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(ROOT)], prefix="adrel_pipeline."):
        if info.name == "adrel_pipeline.definitions" or info.name.startswith("adrel_pipeline.defs"):
            continue
        names.append(info.name)
    return sorted(names)


def test_the_library_covers_every_domain():
    names = library_modules()
    for domain in ("world", "graph", "relevance", "audience", "contextual", "evaluation", "mlops", "serving"):
        assert any(n.startswith(f"adrel_pipeline.{domain}.") for n in names), domain


def test_no_library_module_imports_dagster_in_a_fresh_interpreter():
    # ADREL_EXECUTOR=k8s would fail loading the code location (no dagster-k8s): importing the
    # library must not read it at all.
    code = ("import importlib, sys\n"
            f"for name in {library_modules()!r}:\n"
            "    importlib.import_module(name)\n"
            "    assert 'dagster' not in sys.modules, f'{name} imports dagster'\n"
            "print('ok')\n")
    env = {**os.environ, "ADREL_EXECUTOR": "k8s"}
    out = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
