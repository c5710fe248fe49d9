"""Assets that train the GAT and evaluate it against the generator's Bayes-optimal ceiling."""


import dagster as dg
import polars as pl
from pydantic import Field

from adrel_pipeline.defs.resources import WorldResource
from adrel_pipeline.graph import USER_AD
from adrel_pipeline.metrics import auc, oracle_auc as compute_oracle_auc
from adrel_pipeline.model import load_model
from adrel_pipeline.training import TrainResult, TrainSpec, predict, train_eval_pairs, train_gat

GROUP = "model"
_TRAIN = TrainSpec()


class TrainGATConfig(dg.Config):
    hidden_channels: int = Field(default=_TRAIN.hidden_channels, description="Hidden units per attention head.")
    out_channels: int = Field(default=_TRAIN.out_channels, description="Embedding size fed to the dot product.")
    heads: int = Field(default=_TRAIN.heads, description="Attention heads in the first layer.")
    dropout: float = Field(default=_TRAIN.dropout, description="Dropout between the two layers, in [0, 1).")
    epochs: int = Field(default=_TRAIN.epochs, description="Maximum epochs (full-batch steps).")
    lr: float = Field(default=_TRAIN.lr, description="Adam learning rate, in (0, 1].")
    weight_decay: float = Field(default=_TRAIN.weight_decay, description="Adam weight decay, in [0, 1].")
    patience: int = Field(default=_TRAIN.patience, description="Stop after this many epochs without a better val AUC.")

    def spec(self, seed: int) -> TrainSpec:
        return TrainSpec(**self.model_dump(), seed=seed)


@dg.asset(group_name=GROUP, kinds={"pytorch"})
def trained_gat(context: dg.AssetExecutionContext, config: TrainGATConfig, world: WorldResource,
                link_split: dict) -> dg.Output[dict]:
    """The GAT's best-validation weights (``state_dict`` + config) and its training history."""
    spec = config.spec(world.seed)

    def log_epoch(row: dict) -> None:
        if row["epoch"] == 1 or row["epoch"] % 5 == 0:
            context.log.info("epoch %(epoch)d: train_loss=%(train_loss).4f train_auc=%(train_auc).4f "
                             "val_auc=%(val_auc).4f" % row)

    result = train_gat(link_split, spec, on_epoch=log_epoch)
    n_params = sum(v.numel() for v in result.checkpoint["state_dict"].values())
    return dg.Output(result.to_payload(), metadata={
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_auc": result.best_val_auc,
        "train_seconds": round(result.seconds, 2),
        "seconds_per_epoch": round(result.seconds / result.epochs_run, 3),
        "num_parameters": n_params,
        "hyperparameters": dg.MetadataValue.json(spec.as_dict()),
    })


@dg.asset(group_name=GROUP)
def oracle_auc(world: WorldResource, users: pl.DataFrame, items: pl.DataFrame, link_split: dict) -> dg.Output[float]:
    """Bayes-optimal test AUC from the generator's true probabilities: no honest model exceeds it."""
    spec = world.spec()
    value = compute_oracle_auc(spec, users, items, link_split["test"])
    return dg.Output(value, metadata={
        "oracle_auc": value,
        "val_oracle_auc": compute_oracle_auc(spec, users, items, link_split["val"]),
    })


@dg.asset(group_name=GROUP)
def test_auc(world: WorldResource, trained_gat: dict, link_split: dict, oracle_auc: float) -> dg.Output[dict]:
    """The trained model's AUC on held-out test links, beside the oracle's."""
    model = load_model(TrainResult.from_payload(trained_gat).checkpoint)
    pairs, labels = train_eval_pairs(link_split["train"], world.seed)
    metrics = {
        "test_auc": auc(link_split["test"][USER_AD].edge_label, predict(model, link_split["test"])),
        "val_auc": auc(link_split["val"][USER_AD].edge_label, predict(model, link_split["val"])),
        "train_auc": auc(labels, predict(model, link_split["train"], pairs)),
        "oracle_auc": oracle_auc,
    }
    metrics["auc_to_oracle"] = metrics["test_auc"] / oracle_auc
    return dg.Output(metrics, metadata={k: float(v) for k, v in metrics.items()})
