"""Governance: the GBDT benchmark, evaluation plots, fairness, validator checks, the card, the gate."""
