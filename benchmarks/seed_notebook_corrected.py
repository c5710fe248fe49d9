"""Speed baseline: the seed notebook (cells 1-25), with only its leaks fixed.

The issue's target is that ``dagster asset materialize -m adrel_pipeline --select '*'`` takes at
most half the wall time of this script: same generator, same 50-epoch model (HeteroConv of
GATConv, heads=4, hidden 32, out 16, Adam lr 0.01, train negatives from RandomLinkSplit), with
(a) one feature row per node aligned with node ids and no id column as a feature, and
(b) ``rev_edge_types=[('ad', 'rev_to', 'user')]`` so test edges are hidden from message passing.

    /usr/bin/time -v python benchmarks/seed_notebook_corrected.py
"""

import time

T0 = time.perf_counter()
import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch_geometric import transforms as T
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv, HeteroConv

T_IMPORT = time.perf_counter()
np.random.seed(0)
torch.manual_seed(0)
num_users, num_items = 10_000, 50_000
age_groups = ["18-25", "26-34", "35-43", "44+"]
interests = ["Fashion", "Food", "Exercise", "Home", "Animals", "Sports", "Movies"]
users = pl.DataFrame({"user_id": np.arange(num_users),
                      "age_group": np.random.choice(age_groups, p=[.5, .3, .1, .1], size=num_users),
                      "main_interest": np.random.choice(interests, size=num_users)})
items = pl.DataFrame({"item_id": np.arange(num_items), "category": np.random.choice(interests, size=num_items),
                      "is_ad": np.random.choice([True, False], size=num_items, p=[.1, .9])})


def gen_edges(user_info, items_info, n_obs):
    activity = np.random.beta(2, 7, size=user_info.height)
    user_ids = np.random.choice(user_info["user_id"], size=n_obs, p=activity / activity.sum())
    main = user_info["main_interest"].to_numpy()[user_ids]
    cats = np.where(np.random.rand(n_obs) < 0.4 / 1.4, main, np.random.choice(interests, size=n_obs))
    target = np.empty(n_obs, dtype=np.int64)
    for cat in interests:
        mask = cats == cat
        pool = items_info.filter(pl.col("category") == cat)["item_id"].to_numpy()
        target[mask] = pool[np.random.randint(0, len(pool), size=mask.sum())]
    return pl.DataFrame({"user_id": user_ids, "target_id": target}).join(
        items_info.select(pl.col("item_id").alias("target_id"), "is_ad"), on="target_id")


df = gen_edges(users, items, 200_000)
T_DATA = time.perf_counter()


def one_hot(s):
    return torch.from_numpy(np.stack([(s == c).to_numpy() for c in interests], 1).astype(np.float32))


data = HeteroData()
data["user"].x = torch.cat([torch.from_numpy(np.stack([(users["age_group"] == a).to_numpy() for a in age_groups], 1)
                                             .astype(np.float32)), one_hot(users["main_interest"])], 1)
for name, flag in (("ad", True), ("non_ad", False)):
    nodes = items.filter(pl.col("is_ad") == flag).sort("item_id").with_row_index("idx")
    data[name].x = one_hot(nodes["category"])
    e = df.filter(pl.col("is_ad") == flag).join(nodes.select(pl.col("item_id").alias("target_id"), "idx"),
                                                 on="target_id")
    data["user", "to", name].edge_index = torch.from_numpy(e.select("user_id", "idx").to_numpy().T.astype(np.int64))
data = T.ToUndirected()(data)
train, val, test = T.RandomLinkSplit(num_val=0.1, num_test=0.1, is_undirected=True, add_negative_train_samples=True,
                                     edge_types=[("user", "to", "ad")], rev_edge_types=[("ad", "rev_to", "user")])(data)
T_GRAPH = time.perf_counter()

ETS = [("user", "to", "ad"), ("user", "to", "non_ad"), ("ad", "rev_to", "user"), ("non_ad", "rev_to", "user")]


class Model(torch.nn.Module):
    def __init__(self, hidden=32, out=16, heads=4):
        super().__init__()
        self.conv1 = HeteroConv({t: GATConv((-1, -1), hidden, heads=heads, add_self_loops=False) for t in ETS})
        self.conv2 = HeteroConv({t: GATConv((-1, -1), out, heads=1, add_self_loops=False) for t in ETS})

    def forward(self, x, ei, eli):
        z = self.conv2({k: F.elu(v) for k, v in self.conv1(x, ei).items()}, ei)
        return (z["user"][eli[0]] * z["ad"][eli[1]]).sum(-1)


model = Model()
model(train.x_dict, train.edge_index_dict, train["user", "ad"].edge_label_index)  # init lazy modules
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for epoch in range(50):
    model.train()
    opt.zero_grad()
    loss = F.binary_cross_entropy_with_logits(model(train.x_dict, train.edge_index_dict,
                                                    train["user", "ad"].edge_label_index),
                                              train["user", "ad"].edge_label.float())
    loss.backward()
    opt.step()
T_TRAIN = time.perf_counter()
model.eval()
with torch.no_grad():
    pred = model(test.x_dict, test.edge_index_dict, test["user", "ad"].edge_label_index).sigmoid()
auc = roc_auc_score(test["user", "ad"].edge_label.numpy(), pred.numpy())
T_END = time.perf_counter()
print(f"test AUC {auc:.4f}")
print(f"imports {T_IMPORT - T0:.1f} s, data {T_DATA - T_IMPORT:.1f} s, graph+split {T_GRAPH - T_DATA:.1f} s, "
      f"train {T_TRAIN - T_GRAPH:.1f} s, eval {T_END - T_TRAIN:.1f} s, total {T_END - T0:.1f} s")
