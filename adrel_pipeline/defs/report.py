"""Print an evaluation: ``python -m adrel_pipeline.defs.report [--partition DAY]`` (uses $DAGSTER_HOME).

Without ``--partition``, the most recent ``test_auc`` materialization of any day. ``--audience``
adds the latest ``audience_eval`` table, ``--contextual`` the day's relevance labels and model and
the serving funnel (fraction relevant per stage, the holdout gap, revenue, the A/A and A/B tests).
"""

import argparse
import sys

import dagster as dg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--partition", help="day of the model to report, e.g. 2026-01-07")
    parser.add_argument("--audience", action="store_true", help="also the audience expansion evaluation")
    parser.add_argument("--contextual", nargs="?", const="", metavar="DAY",
                        help="also the contextual relevance labels, model and serving funnel of DAY (default: the "
                             "partition's day)")
    args = parser.parse_args(argv)
    instance = dg.DagsterInstance.get()
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("test_auc"),
                              asset_partitions=[args.partition] if args.partition else None),
        limit=1,
    ).records
    if not records:
        which = f" for partition {args.partition}" if args.partition else ""
        print(f"test_auc has not been materialized{which} in this DAGSTER_HOME yet", file=sys.stderr)
        return 1
    event = records[0].event_log_entry.asset_materialization
    md = {k: v.value for k, v in event.metadata.items()}
    print(f"{'partition':>24}: {event.partition}")
    # Absent from older materializations, which all had the oracle.
    with_oracle = bool(md.get("oracle_available", 1))
    oracle_keys = ("oracle_auc", "auc_to_oracle", "oracle_mrr", "oracle_hits_at_100")
    for key in ("test_auc", "val_auc", "train_auc", "oracle_auc", "auc_to_oracle", "baseline_popularity_auc",
                "baseline_logreg_auc", "test_mrr", "oracle_mrr", "test_hits_at_100", "oracle_hits_at_100"):
        if key in oracle_keys and not with_oracle:
            continue
        # A sampled ranking estimate shows its standard error (absent from older materializations).
        se = f" ± {md[key + '_se']:.4f}" if md.get(key + "_se") else ""
        print(f"{key:>24}: {md[key]:.4f}{se}")
    if not with_oracle:
        print(f"{'oracle':>24}: unavailable (real data: the users/items carry no generator truth); the reference is "
              f"the best baseline, test AUC {md['test_auc_minus_best_baseline']:+.4f} "
              f"± {md['test_auc_minus_best_baseline_se']:.4f} above it")
    if "ranking_exact" in md and not md["ranking_exact"]:
        print(f"{'ranking':>24}: sampled, {int(md['ranked_positives'])} of {int(md['ranking_positives'])} test "
              "positives ranked against every ad (± one standard error)")
    if "next_day_auc" in md:
        oracle = f"oracle {md['next_day_oracle_auc']:.4f}, " if "next_day_oracle_auc" in md else ""
        print(f"{'next_day_auc':>24}: {md['next_day_auc']:.4f} ({oracle}{int(md['next_day_pairs'])} pairs of the "
              "next day)")
    else:
        print(f"{'next_day_auc':>24}: not yet (the next day's interactions are not materialized)")
    print(f"{'model version':>24}: v{md['mlflow_model_version']} -> {md['promotion']} ({md['promotion_reason']})")
    # A team's own data is stamped with its source's fingerprint (source-<hash>), not a world's.
    data = md["world_fingerprint"]
    print(f"{'data' if data.startswith('source-') else 'world':>24}: {data}")
    print(f"{'mlflow run':>24}: {md['mlflow_run_url']}")
    status = audience(instance) if args.audience else 0
    if args.contextual is None:
        return status
    return contextual(instance, args.contextual or event.partition) or status


def audience(instance: dg.DagsterInstance) -> int:
    records = instance.fetch_materializations(dg.AssetKey("audience_eval"), limit=1).records
    if not records:
        print("audience_eval has not been materialized in this DAGSTER_HOME yet", file=sys.stderr)
        return 1
    md = {k: v.value for k, v in records[0].event_log_entry.asset_materialization.metadata.items()}
    print(f"\naudience expansion, {md['advertisers']} advertisers: mean over k of recall@k and precision@k "
          "(gain over lr), and the share of the expansion in the true audience")
    print(md["table"])
    print(f"{'mlflow run':>12}: {md['mlflow_run_url']}")
    return 0



def _latest(instance: dg.DagsterInstance, asset: str, partition: str | None) -> dict | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1).records
    if not records:
        return None
    return {k: v.value for k, v in records[0].event_log_entry.asset_materialization.metadata.items()}


def contextual(instance: dg.DagsterInstance, partition: str | None) -> int:
    from adrel_pipeline.world.contexts import CONTENT_TYPES, SURFACES

    labels, model = _latest(instance, "relevance_labels", partition), _latest(instance, "relevance_model", partition)
    if labels is None or model is None:
        print(f"relevance_labels / relevance_model have not been materialized for {partition} in this DAGSTER_HOME "
              "yet", file=sys.stderr)
        return 1
    if model.get("oracle_available") is False:
        return own_labels(labels, model, partition)
    print(f"\ncontextual relevance, {partition}: {labels['dagster/row_count']} labelled rows "
          f"({labels['rows/candidates']} candidates, {labels['rows/heuristic']} heuristic, {labels['rows/test']} test)")
    print(f"{'disagreement_rate':>34}: {labels['disagreement_rate']:.4f} (the seed's jobs: below 0.10)")
    print(f"{'krippendorff_alpha':>34}: {labels['krippendorff_alpha']:.4f} (ordinal)")
    print(f"{'ECE on labels (vs oracle probs)':>34}: {model['ece']:.4f} ({model['true_ece']:.4f}); "
          f"oracle's ECE on labels {model['oracle/ece']:.4f}")
    for segment in (*CONTENT_TYPES, *SURFACES):
        print(f"{'ece/' + segment:>34}: {model['ece/' + segment]:.4f} ({model['true_ece/' + segment]:.4f})"
              f"   legacy features: {model['no_category_match/ece/' + segment]:.4f}")
    print(f"{'brier / auc / ndcg_at_10':>34}: {model['brier']:.4f} / {model['auc']:.4f} / {model['ndcg_at_10']:.4f}"
          f"   oracle {model['oracle/brier']:.4f} / {model['oracle/auc']:.4f} / 1")
    print(f"{'ablation (category match)':>34}: relevant share of top-ranked shopping ads "
          f"{model['top_k_shopping_relevant_share']:.3f} vs {model['no_category_match/top_k_shopping_relevant_share']:.3f}"
          f" without it ({model['ablation/shopping_relevant_share_gain']:+.1%}); their click rate "
          f"{model['ablation/shopping_ctr_gain']:+.1%}")
    print(f"{'old heuristic sample':>34}: ECE {model['heuristic/ece']:.4f}, Brier {model['heuristic/brier']:.4f}, "
          f"AUC {model['heuristic/auc']:.4f}, nDCG@10 {model['heuristic/ndcg_at_10']:.4f} on the same test set")
    print(f"{'mlflow run':>34}: {model['mlflow_run_url']}")
    return funnel(instance, partition)


def own_labels(labels: dict, model: dict, partition: str | None) -> int:
    """A team's own labels and the model trained on them: no oracle, and no funnel to measure it in."""
    from adrel_pipeline.world.contexts import CONTENT_TYPES, SURFACES

    print(f"\ncontextual relevance, {partition}: {labels['dagster/row_count']} labelled pairs ({labels['ratings']} "
          f"ratings over {labels['days']} days); {model['train_pairs']} to train, {model['test_pairs']} to test "
          "(held-out contexts)")
    print(f"{'disagreement_rate':>34}: {labels['disagreement_rate']:.4f} (the seed's jobs: below 0.10)")
    print(f"{'krippendorff_alpha':>34}: {labels['krippendorff_alpha']:.4f} (ordinal)")
    print(f"{'ECE on labels':>34}: {model['ece']:.4f}   oracle: unavailable (real data: the truth is unknown)")
    for segment in (*CONTENT_TYPES, *SURFACES):
        if f"ece/{segment}" in model:
            print(f"{'ece/' + segment:>34}: {model['ece/' + segment]:.4f}"
                  f"   legacy features: {model['no_category_match/ece/' + segment]:.4f}")
    print(f"{'brier / auc / ndcg_at_10':>34}: {model['brier']:.4f} / {model['auc']:.4f} / {model['ndcg_at_10']:.4f}"
          f"   legacy features {model['no_category_match/brier']:.4f} / {model['no_category_match/auc']:.4f} / "
          f"{model['no_category_match/ndcg_at_10']:.4f}")
    print(f"{'adrel-relevance':>34}: v{model['mlflow_model_version']} -> {model['promotion']}: "
          f"{model['promotion_reason']}")
    print(f"{'mlflow run':>34}: {model['mlflow_run_url']}")
    return 0


def funnel(instance: dg.DagsterInstance, partition: str | None) -> int:
    from adrel_pipeline.contextual.funnel import SURVIVOR_STAGES

    md = _latest(instance, "funnel_metrics", partition)
    if md is None:
        print(f"funnel_metrics has not been materialized for {partition} in this DAGSTER_HOME yet", file=sys.stderr)
        return 1
    contexts = int(md["contexts"])
    print(f"\nserving funnel, {partition}: {contexts} contexts, {int(md['candidates'])} candidates; "
          f"truly relevant share of each stage's survivors (the zero-relevance holdout's beside it)")
    for stage in SURVIVOR_STAGES:
        print(f"{'fraction_relevant/' + stage:>34}: {md[f'fraction_relevant/{stage}']:.3f}   "
              f"holdout {md[f'holdout/fraction_relevant/{stage}']:.3f}")
    print(f"{'holdout gap (served ads)':>34}: {md['holdout_gap/fraction_relevant/auction_winners']:+.1%} relevant, "
          f"{md['holdout_gap/ndcg']:+.1%} nDCG, {md['holdout_gap/ctr']:+.1%} CTR")
    print(f"{'revenue per context':>34}: {md['revenue_per_context']:.4f} vs the holdout's "
          f"{md['holdout/revenue_per_context']:.4f} ({md['holdout_gap/revenue_per_context']:+.1%}); "
          f"trim rate {md['trim_rate']:.3f}, nDCG {md['ndcg']:.3f}, CTR {md['ctr']:.4f}")
    print(f"{'pCTR on home':>34}: {md['pctr_home']}")
    experiments = _latest(instance, "relevance_experiments", partition)
    if experiments is not None:
        print(f"{'A/A, served relevance (B / A - 1)':>34}: sd {experiments['aa/controlled/sd']:.2%} with fixed contexts, "
              f"{experiments['aa/uncontrolled/sd']:.2%} with fresh ones; intervals cover 0 in "
              f"{experiments['aa/controlled/coverage']:.0%} / {experiments['aa/uncontrolled/coverage']:.0%} "
              f"(nominal {experiments['aa/confidence']:.0%})")
        for name in ("category_match_launch", "swap_equal_calibration", "swap_miscalibrated"):
            key = f"ab/{name}/fraction_relevant"
            revenue = f"ab/{name}/revenue"
            print(f"{'A/B ' + name:>34}: relevant {experiments[key + '/relative']:+.1%} "
                  f"[{experiments[key + '/low']:+.1%}, {experiments[key + '/high']:+.1%}], revenue "
                  f"{experiments[revenue + '/relative']:+.1%} [{experiments[revenue + '/low']:+.1%}, "
                  f"{experiments[revenue + '/high']:+.1%}]")
    print(f"{'model version':>34}: v{md['mlflow_model_version']} -> {md['promotion']} ({md['promotion_reason']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
