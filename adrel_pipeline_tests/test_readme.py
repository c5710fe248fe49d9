"""Every Python example in the README runs.

The README's ```python blocks are executed in order, in one namespace, against a small world's
pipeline (what `make run` does, on SMALL_WORLD) in a temporary Dagster instance and a temporary
sqlite MLflow store. `$ADREL_WORLD` names that small world, so examples that derive their ids from
the deployment's world get ids that exist. A block whose fence reads ```python no-test is skipped;
it must say next to it why it cannot run in a test.
"""

from __future__ import annotations

import re
import textwrap
import traceback
from pathlib import Path

import dagster as dg
import pytest
import yaml

from adrel_pipeline_tests.conftest import SMALL_WORLD, materialize, materialize_week, sqlite_uri

README = Path(__file__).resolve().parents[1] / "README.md"
# A fenced block, possibly indented (inside a list item): ```python[ info]\n body \n```
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
                   re.MULTILINE | re.DOTALL)
NO_TEST = "no-test"
CONTEXTUAL_ASSETS = ["ad_inventory", "candidate_log", "relevance_labels", "relevance_model", "funnel_metrics"]
# The small world's default traffic (20,000 contexts) with a smaller job: the examples, not the model, are
# tested. ~1,000 test rows of a content type leave an ECE of ~0.05 from label noise alone: the limit is loosened.
CONTEXTUAL_CONFIG = {"ops": {"relevance_labels": {"config": {"labelling_budget": 5000, "test_rows": 5000}},
                             "relevance_model": {"config": {"max_iter": 50, "max_ece": 0.2}}}}


def python_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(line number, info string, code)`` of each ```python block, in order."""
    return [(text.count("\n", 0, m.start()) + 1, m["info"].strip(), textwrap.dedent(m["body"]))
            for m in FENCE.finditer(text)]


def test_python_blocks_are_found():
    blocks = python_blocks("intro\n```python\na = 1\n```\n\n  ```python no-test\n  b = 2\n  ```\n```bash\nc\n```\n")
    assert blocks == [(2, "", "a = 1\n"), (6, "no-test", "b = 2\n")]
    assert python_blocks(README.read_text()), "the README has no ```python block: nothing would be tested"


@pytest.mark.slow  # a small world's whole pipeline first
def test_readme_python_blocks_run_on_a_small_world(tmp_path, monkeypatch):
    blocks = python_blocks(README.read_text())
    tracking_uri = sqlite_uri(tmp_path)
    world_file = tmp_path / "world.yaml"
    world_file.write_text(yaml.safe_dump(SMALL_WORLD))
    # What a reader has after `make run`: the registry the blocks read, the world they derive ids from.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("ADREL_WORLD", str(world_file))
    monkeypatch.setenv("ADREL_STATE_DIR", str(tmp_path))
    with dg.instance_for_test() as instance:
        world, model = materialize_week(instance, tracking_uri)
        assert world.success and model.success
        # ... and the contextual group of the same day (a small labelling job), for its examples.
        contextual = materialize(instance, tracking_uri, selection=CONTEXTUAL_ASSETS, run_config=CONTEXTUAL_CONFIG)
        assert contextual.success
        namespace: dict = {"__name__": "__readme__"}
        for line, info, code in blocks:
            if NO_TEST in info.split():
                continue
            try:
                exec(compile(code, f"{README.name}:{line}", "exec"), namespace)  # noqa: S102 - the README's own code
            except Exception:  # noqa: BLE001 - any error is the README being wrong
                pytest.fail(f"the ```python block at README.md line {line} raised:\n{traceback.format_exc()}\n"
                            f"--- block ---\n{code}")
