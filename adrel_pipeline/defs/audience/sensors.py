"""Advertisers added without redeploying: a sensor turns seed-list files dropped into the inbox
into advertiser partitions and their expansion runs."""


import hashlib
import shutil
import time
from pathlib import Path

import dagster as dg

from adrel_pipeline.audience.seed_lists import SeedListError, advertiser_id_of, read_seed_list
from adrel_pipeline.defs.audience.resources import AudienceResource
from adrel_pipeline.defs.shared.io_manager import stored_value
from adrel_pipeline.defs.shared.partitions import advertisers as ADVERTISERS
from adrel_pipeline.mlops.serialization import atomic_write

# A file younger than this may still be being copied in: it waits for the next tick.
SETTLE_SECONDS = 2.0

audience_expansion_job = dg.define_asset_job(
    "audience_expansion",
    selection=dg.AssetSelection.assets("seed_lists").downstream(),
    partitions_def=ADVERTISERS,
    description="One advertiser's seed list, model, expansion, and the evaluation over every advertiser.",
)


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.move(str(path), folder / path.name))


def _reject(path: Path, audience: AudienceResource, reason: str) -> None:
    moved = _move(path, audience.rejected)
    moved.with_name(moved.name + ".error.txt").write_text(reason + "\n")


@dg.sensor(job=audience_expansion_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Validates seed lists dropped into the audience inbox; registers each new advertiser as a "
                       "partition and requests its expansion run. Bad files move to rejected/ with the reason.")
def audience_inbox_sensor(context: dg.SensorEvaluationContext, audience: AudienceResource):
    inbox = audience.inbox
    now = time.time()
    files = sorted(p for p in inbox.glob("*") if p.is_file() and not p.name.startswith(".")
                   and now - p.stat().st_mtime >= SETTLE_SECONDS) if inbox.is_dir() else []
    if not files:
        return dg.SkipReason(f"no seed lists waiting in {inbox}")
    users = stored_value(context.instance, "users")
    roster = stored_value(context.instance, "advertisers")
    if users is None:
        return dg.SkipReason("users is not materialized yet: run `make run` (or materialize users) first")
    world_advertisers = set() if roster is None else set(roster["advertiser_id"])
    known = users["user_id"].to_numpy()

    requests, new = [], []
    for path in files:
        try:
            if advertiser_id_of(path) in world_advertisers:
                raise SeedListError(f"{path.name}: {advertiser_id_of(path)} is one of the data's own "
                                    "advertisers (the world's, or $ADREL_SOURCE's seed_lists): upload under another id")
            table = read_seed_list(path, known, audience.min_seed_users)
        except SeedListError as err:
            _reject(path, audience, str(err))
            context.log.warning(f"rejected {path.name}: {err}")
            continue
        advertiser = table["advertiser_id"][0]
        atomic_write(audience.accepted_path(advertiser), table.write_parquet)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        _move(path, inbox / "processed")
        if not context.instance.has_dynamic_partition(ADVERTISERS.name, advertiser) and advertiser not in new:
            new.append(advertiser)
        requests.append(dg.RunRequest(run_key=f"{advertiser}:{digest}", partition_key=advertiser,
                                      tags={"adrel/seed_list": path.name}))
        context.log.info(f"accepted {path.name}: advertiser {advertiser}, {table.height} seed users")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[ADVERTISERS.build_add_request(new)] if new else [],
    )


__all__ = ["audience_expansion_job", "audience_inbox_sensor"]
