"""Audience expansion (act-alike): universal user embeddings trained on organic interactions
(:mod:`.embeddings`), the raw features of the regression baseline (:mod:`.features`), the
expansion methods (:mod:`.methods`: per-advertiser logistic regression, LSH similarity and the
combined multi-head NN on the embeddings), their parameters (:mod:`.spec`), the steps the Dagster
assets run over a roster of advertisers (:mod:`.training`), uploaded seed lists
(:mod:`.seed_lists`) and the rules the audience checks apply (:mod:`.rules`)."""
