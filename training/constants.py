"""Numbers and names with a meaning shared by the jobs, the launchers and the sbatch scripts."""

# Exit codes of every entry point (slurm/common.sh requeues on PREEMPTED).
EXIT_OK = 0
EXIT_FAILED = 1  # a bug or a crash: the traceback says where
EXIT_USER_ERROR = 2  # bad config or data: the one-line message names what to change
EXIT_PREEMPTED = 3  # checkpointed and stopped on request (or a sweep interrupted): run it again

# The signal that asks a job to checkpoint at the next step and exit with EXIT_PREEMPTED. USR2,
# not USR1: NCCL claims USR1. Slurm sends it with --signal=B:USR2@<seconds>.
STOP_SIGNAL = "USR2"
# In the run folder: created by a driver that took the signal for its workers (Ray).
STOP_FILE = "STOP"
