"""Numbers and names with a meaning shared by the jobs, the launchers and the sbatch scripts."""

# The exit codes of every entry point, one meaning each (slurm/common.sh requeues on PREEMPTED;
# docs/reliability.md lists them for users).
EXIT_OK = 0  # done
EXIT_FAILED = 1  # a crash (a bug, a dead rank or worker, a store down): the log says where
EXIT_USER_ERROR = 2  # bad config or data: the one-line message names what to change
EXIT_PREEMPTED = 3  # checkpointed and stopped on request (or a sweep interrupted): run it again
EXIT_REFUSED = 4  # ran and said no: the promotion gate refused, or a doctor check failed
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_FAILED: "crash",
    EXIT_USER_ERROR: "bad input",
    EXIT_PREEMPTED: "preempted",
    EXIT_REFUSED: "refused",
}

# The signal that asks a job to checkpoint at the next step and exit with EXIT_PREEMPTED. USR2,
# not USR1: NCCL claims USR1. Slurm sends it with --signal=B:USR2@<seconds>.
STOP_SIGNAL = "USR2"
# In the run folder: created by a driver that took the signal for its workers (Ray).
STOP_FILE = "STOP"
