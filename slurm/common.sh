# Shared by the sbatch scripts: activate the environment, pick the run folder, run the job step
# with the preemption signal forwarded, and requeue the job when it checkpointed and stopped.
# Sourced, not run. Variables a user may set (export them before sbatch, or in the script):
#   RISKBRAIN_ENV      a conda environment (name or path) or a virtualenv folder to activate;
#                      unset: the environment sbatch was called from (Slurm passes it on)
#   RISKBRAIN_HOME     the riskbrain checkout (default: the folder sbatch was called from)
#   RISKBRAIN_RUN_DIR  the job's output folder (default: outputs/slurm/<job name>-<job id>, the
#                      same after a requeue, so the job resumes from its own checkpoints)
#   RISKBRAIN_SIGNAL   the signal that asks the job to checkpoint and stop (default USR2; keep it
#                      equal to #SBATCH --signal and checkpoint.signal)

riskbrain_activate() {
  cd "${RISKBRAIN_HOME:-$SLURM_SUBMIT_DIR}"
  if [ -n "${RISKBRAIN_ENV:-}" ]; then
    if [ -f "$RISKBRAIN_ENV/bin/activate" ]; then
      # shellcheck disable=SC1091
      source "$RISKBRAIN_ENV/bin/activate"
    else
      eval "$(conda shell.bash hook)"
      conda activate "$RISKBRAIN_ENV"
    fi
  fi
  export RISKBRAIN_RUN_DIR="${RISKBRAIN_RUN_DIR:-outputs/slurm/${SLURM_JOB_NAME}-${SLURM_JOB_ID}}"
  export RISKBRAIN_SIGNAL="${RISKBRAIN_SIGNAL:-USR2}"
  echo "riskbrain: job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST}: $(command -v python), run dir ${RISKBRAIN_RUN_DIR}"
}

# Run "$@" in the background so the batch shell can take the signal Slurm sends before the
# time limit or a preemption (--signal=B:USR2@...), and pass it on to the job step.
riskbrain_run() {
  "$@" &
  local child=$! rc
  trap 'echo "riskbrain: got SIG${RISKBRAIN_SIGNAL}: asking the job to checkpoint and stop"; kill -s "${RISKBRAIN_SIGNAL}" "$child" 2>/dev/null' "${RISKBRAIN_SIGNAL}"
  while true; do
    wait "$child" && rc=0 || rc=$?
    kill -0 "$child" 2>/dev/null || break  # wait returned for the signal, not for the exit
  done
  trap - "${RISKBRAIN_SIGNAL}"
  if [ "$rc" -eq 3 ]; then  # the job checkpointed and stopped on request
    echo "riskbrain: checkpoint written; requeueing job ${SLURM_JOB_ID}"
    scontrol requeue "${SLURM_JOB_ID}"
    exit 0
  fi
  return "$rc"
}
