"""The interaction log as a PyG graph (:mod:`.build`), its leak-free link split (:mod:`.split`,
parameters in :mod:`.spec`) and the rules both obey (:mod:`.rules`). Only :mod:`.spec` is torch-free."""
