"""Code versions: every asset hashes the modules that shape its value, so a change marks exactly
the assets it affects (and those downstream of them) as stale."""

import shutil

import pytest

from adrel_pipeline.mlops.code_version import (
    CODE_VERSION,
    MODULES_BY_ASSET,
    PACKAGE_ROOT,
    asset_code_version,
    code_version,
)

WORLD = {"users", "items", "interaction_edges"}
RELEVANCE = {"hetero_graph", "link_split", "trained_gat", "oracle_metrics", "test_auc"}
AUDIENCE_MODELS = {"audience_models", "audience_expansions", "audience_eval"}


@pytest.fixture
def package(tmp_path):
    """A copy of the package's source, to edit without touching the checkout."""
    root = tmp_path / "adrel_pipeline"
    shutil.copytree(PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def versions(root=None) -> dict[str, str]:
    return {asset: asset_code_version(asset, root) for asset in MODULES_BY_ASSET}


def edit(root, module: str) -> None:
    path = root / module
    path.write_text(path.read_text() + "\n# a change\n")


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {asset for asset in before if before[asset] != after[asset]}


def test_every_asset_carries_the_version_of_its_modules():
    import dagster as dg

    from adrel_pipeline.definitions import defs

    nodes = {node.key.to_user_string(): node for node in defs.resolve_asset_graph().asset_nodes}
    assert set(nodes) == set(MODULES_BY_ASSET)
    for asset, node in nodes.items():
        assert node.code_version == asset_code_version(asset), asset
    assert defs.resolve_assets_def(dg.AssetKey("test_auc")).code_versions_by_key[dg.AssetKey("test_auc")] \
        == CODE_VERSION


def test_the_copy_has_the_checkouts_versions(package):
    assert versions(package) == versions()


def test_a_generator_change_marks_the_world_tables_and_everything_after_them(package):
    before = versions(package)
    edit(package, "world/simulation.py")
    after = versions(package)
    assert changed(before, after) == set(MODULES_BY_ASSET)
    assert WORLD <= changed(before, after)
    assert code_version("world/simulation.py", root=package) != code_version("world/simulation.py")


def test_a_training_change_marks_only_the_model(package):
    before = versions(package)
    edit(package, "relevance/training.py")
    assert changed(before, versions(package)) == {"trained_gat", "test_auc"}
    assert CODE_VERSION != code_version(*MODULES_BY_ASSET["test_auc"], root=package)


@pytest.mark.parametrize("module, expected", [
    ("graph/build.py", RELEVANCE),
    ("graph/split.py", {"link_split", "trained_gat", "oracle_metrics", "test_auc"}),
    ("world/oracle.py", {"oracle_metrics", "test_auc"} | AUDIENCE_MODELS),
    ("world/advertisers.py", {"advertisers", "seed_lists"} | AUDIENCE_MODELS),
    ("audience/embeddings.py", {"user_embeddings"} | AUDIENCE_MODELS),
    ("audience/methods.py", AUDIENCE_MODELS),
    ("relevance/ranking.py", {"test_auc"}),
    # A module no asset's value depends on.
    ("world/rules.py", set()),
])
def test_a_change_marks_the_assets_whose_modules_it_touches(package, module, expected):
    before = versions(package)
    edit(package, module)
    assert changed(before, versions(package)) == expected


def test_version_depends_on_the_set_of_modules_and_their_source(package):
    assert code_version("world/spec.py", "world/simulation.py") == \
        code_version("world/simulation.py", "world/spec.py", "world/spec.py")
    assert code_version("world/spec.py") != code_version("world/simulation.py")
    # Moving code from one module to another changes the version.
    spec, simulation = package / "world/spec.py", package / "world/simulation.py"
    before = code_version("world/spec.py", "world/simulation.py", root=package)
    text = spec.read_text()
    spec.write_text(text[:-1])
    simulation.write_text(text[-1] + simulation.read_text())
    assert code_version("world/spec.py", "world/simulation.py", root=package) != before
    assert len(before) == 12 and int(before, 16) >= 0


def test_unknown_modules_and_assets_fail_clearly():
    with pytest.raises(FileNotFoundError, match="no module 'world/nope.py' under"):
        code_version("world/nope.py")
    with pytest.raises(ValueError, match="at least one module"):
        code_version()
    with pytest.raises(KeyError, match="no modules listed for asset 'nope'"):
        asset_code_version("nope")
