"""riskbrain: deep credit-risk networks, trained anywhere from a laptop to a Slurm cluster."""
