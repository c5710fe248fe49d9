"""Dagster resources: the synthetic world's parameters, and MLflow tracking."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr, create_model

from adrel_pipeline.defs.shared.params import spec_fields
from adrel_pipeline.mlops import registry, store
from adrel_pipeline.mlops.paths import default_tracking_uri
from adrel_pipeline.world.spec import WorldSpec, deployment_world


class _WorldBase(dg.ConfigurableResource):
    """The synthetic ad platform's parameters: the deployment's world (``$ADREL_WORLD``, a YAML
    file of these fields; unset: the default world), overridable per run with
    ``resources.world.config`` in run config (the Launchpad shows the deployment's values)."""

    def spec(self) -> WorldSpec:
        """The validated world; raises ``WorldConfigError`` naming the bad field and its range."""
        return WorldSpec(**self.model_dump())

    @property
    def fingerprint(self) -> str:
        return self.spec().fingerprint

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Resources initialise before any step runs: a bad world fails the run before anything is written.
        self.spec()


# The fields are WorldSpec's declarations; their defaults are the deployment's world, read when
# the code location loads (every Dagster process, and `make run`, sees the same file).
WorldResource = create_model("WorldResource", __base__=_WorldBase, **spec_fields(WorldSpec, defaults=deployment_world()))


class MlflowTracking(dg.ConfigurableResource):
    """Where trainings are recorded and models registered: an MLflow tracking store.

    Written for this project instead of ``dagster-mlflow`` (an old-style, beta resource). At run
    start it checks the store answers and gets or creates the experiment, so an unreachable or
    misconfigured store fails the run, naming the URI, before any asset is written.
    """

    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI when set, else the embedded "
                    "sqlite store .adrel/mlflow.db (artifacts in .adrel/mlartifacts).",
    )
    experiment_name: str = Field(default=store.DEFAULT_EXPERIMENT, description="MLflow experiment.")
    registered_model_name: str = Field(default=registry.DEFAULT_MODEL_NAME, description="Registered model.")
    ui_url: str | None = Field(
        default=None,
        description="MLflow UI base URL for links. Default: the tracking URI when it is a server, "
                    "else http://127.0.0.1:5000 (make mlflow-ui).",
    )
    dagster_ui_url: str = Field(default="http://127.0.0.1:3000", description="Dagster UI base URL for links.")

    _experiment_id: str | None = PrivateAttr(default=None)

    @property
    def uri(self) -> str:
        return self.tracking_uri or default_tracking_uri()

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            raise RuntimeError("MlflowTracking is not set up: use it as a Dagster resource")
        return self._experiment_id

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._experiment_id = store.connect(self.uri, self.experiment_name)

    def _ui(self) -> str:
        if self.ui_url:
            return self.ui_url
        return self.uri if self.uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"

    def run_url(self, run_id: str) -> str:
        return store.run_url(self._ui(), self.experiment_id, run_id)

    def model_version_url(self, version: str, name: str | None = None) -> str:
        return store.model_version_url(self._ui(), name or self.registered_model_name, version)

    def run_metadata(self, run_id: str) -> dict:
        """Materialization metadata linking to the MLflow run."""
        return {"mlflow_run_id": run_id, "mlflow_run_url": dg.MetadataValue.url(self.run_url(run_id))}

    def promotion_metadata(self, promotion, name: str | None = None) -> dict:
        """Materialization metadata of a registered version and the gate's decision
        (``promotion``: a :class:`~adrel_pipeline.mlops.registry.Promotion`)."""
        return {"mlflow_model_version": int(promotion.version),
                "mlflow_model_url": dg.MetadataValue.url(self.model_version_url(promotion.version, name)),
                "promotion": promotion.alias, "promotion_reason": promotion.reason}

    def dagster_run_url(self, run_id: str) -> str:
        return f"{self.dagster_ui_url.rstrip('/')}/runs/{run_id}"

    def dagster_tags(self, context: dg.AssetExecutionContext) -> dict[str, str]:
        """Tags tying an MLflow run to the Dagster materialization that made it."""
        key = context.asset_key
        tags = {
            "dagster.run_id": context.run.run_id,
            "dagster.run_url": self.dagster_run_url(context.run.run_id),
            "dagster.asset_key": key.to_user_string(),
            "dagster.job": context.run.job_name,
            "dagster.code_version": context.assets_def.code_versions_by_key.get(key) or "",
        }
        if context.has_partition_key:
            tags["dagster.partition_key"] = context.partition_key
        return tags
