"""The cluster around a job: Slurm submission and the preflight doctor."""
