"""Metrics (AUC, paired standard errors, ranking metrics, the oracle's), plots, and the model rules."""
