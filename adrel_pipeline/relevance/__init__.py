"""User–ad relevance: the GAT (:mod:`.model`), its training (:mod:`.training`), ranking candidates
(:mod:`.ranking`), the registered MLflow model (:mod:`.pyfunc_model`) and parameters (:mod:`.spec`)."""
