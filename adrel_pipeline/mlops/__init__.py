"""MLflow and storage: the tracking store and run records (:mod:`.store`), model packaging
(:mod:`.packaging`), the registry (:mod:`.registry`), the promotion policy (:mod:`.promotion`), file
formats (:mod:`.serialization`), local paths and code versions."""
