"""The audience system's deployment settings: where advertisers' seed lists arrive."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from adrel_pipeline.mlops.paths import state_dir
from adrel_pipeline.world.advertisers import MIN_SEED_USERS


class AudienceResource(dg.ConfigurableResource):
    """Seed-list uploads: a file ``<advertiser_id>.csv`` or ``.parquet`` dropped into ``inbox_dir``
    is validated by ``audience_inbox_sensor``; a good one is stored under ``accepted/`` and its
    advertiser gets a partition and an expansion run, a bad one moves to ``rejected/`` with a
    ``.error.txt`` beside it saying why."""

    inbox_dir: str | None = Field(
        default=None, description="Folder watched for uploaded seed lists. Default: <state dir>/audience/inbox "
                                  "($ADREL_STATE_DIR, else .adrel/ in the checkout).")
    min_seed_users: int = Field(
        default=MIN_SEED_USERS, ge=2,
        description=f"An uploaded list needs at least this many platform users (default {MIN_SEED_USERS}), so that "
                    "its 10% holdout is not empty. Allowed: an integer >= 2.")

    @property
    def inbox(self) -> Path:
        return Path(self.inbox_dir) if self.inbox_dir else state_dir() / "audience" / "inbox"

    @property
    def accepted(self) -> Path:
        return self.inbox / "accepted"

    @property
    def rejected(self) -> Path:
        return self.inbox / "rejected"

    def accepted_path(self, advertiser_id: str) -> Path:
        return self.accepted / f"{advertiser_id}.parquet"
