# shellcheck shell=bash
# Sourced by the batch scripts in this directory: starts varpro-rbf on the ranks of a SLURM
# allocation, writes to the job log what runs where, and passes SLURM's warning signal on.
#
#   VARPRO_LAUNCHER   srun (default): srun --mpi=pmix, Open MPI's ranks wire up through PMIx;
#                     mpirun: Open MPI's own launcher, which reads the allocation from SLURM
#   VARPRO_TOP        the varpro-rbf source tree (default: the directory sbatch was run from)
#   VARPRO_EXE        the executable (default: $VARPRO_TOP/build/varpro-rbf)
#
# The scripts ask for `--signal=B:USR1@120`: 120 s before the time limit SLURM sends SIGUSR1 to
# the batch shell alone (without `B:` it would reach only srun's steps, never the ranks mpirun
# starts), and varpro_launch passes it to the launcher, which forwards it to every rank.
# varpro-rbf then stops at the next step boundary, keeps its partial result and exits 4; submit
# the same job again to resume. SLURM looks at time limits about every 30 s and may send the
# signal up to a minute early, so keep the time limit well above the warning time.

: "${VARPRO_TOP:=${SLURM_SUBMIT_DIR:-.}}"
: "${VARPRO_EXE:=$VARPRO_TOP/build/varpro-rbf}"
: "${VARPRO_LAUNCHER:=srun}"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

# SIGUSR1 from now on: passed to the running launcher, or stops the launches to come
varpro_stopped=0
varpro_launcher_pid=""
varpro_forward_signal() {
    varpro_stopped=1
    echo "SIGUSR1 at $(date '+%F %T')${varpro_launcher_pid:+: passed on to the ranks}"
    [ -z "$varpro_launcher_pid" ] || kill -USR1 "$varpro_launcher_pid" 2>/dev/null || true
}
trap varpro_forward_signal USR1

# varpro_header TITLE: the job log's first lines, the job and the nodes it holds
varpro_header() {
    local array=""
    [ -z "${SLURM_ARRAY_TASK_ID:-}" ] || array=" (array task $SLURM_ARRAY_TASK_ID of job ${SLURM_ARRAY_JOB_ID:-?})"
    echo "$1: job ${SLURM_JOB_ID:-?}$array, $(date '+%F %T')"
    echo "nodes: ${SLURM_JOB_NODELIST:-$(hostname)} (${SLURM_JOB_NUM_NODES:-1} node(s), ${SLURM_NTASKS:-?} task(s))"
    echo "launcher: $VARPRO_LAUNCHER"
}

# varpro_launch RANKS NODES ARGS...: runs varpro-rbf ARGS on RANKS ranks over NODES nodes (each
# empty: the whole allocation) and returns its exit status, 4 without starting it once SIGUSR1
# has come. The launcher reports the CPU binding of every rank (srun --cpu-bind=verbose, mpirun
# --report-bindings).
varpro_launch() {
    local ranks=$1 nodes=$2
    shift 2
    local cmd
    case "$VARPRO_LAUNCHER" in
        srun)
            cmd=(srun --mpi=pmix --cpu-bind=verbose)
            [ -z "$ranks" ] || cmd+=(--ntasks="$ranks")
            [ -z "$nodes" ] || cmd+=(--nodes="$nodes")
            ;;
        mpirun)
            # One rank per task of the allocation unless told; maps by slot, filling a node first
            cmd=(mpirun --report-bindings)
            ranks=${ranks:-${SLURM_NTASKS:-}}
            [ -z "$ranks" ] || cmd+=(-n "$ranks")
            ;;
        *)
            echo "VARPRO_LAUNCHER must be srun or mpirun, not '$VARPRO_LAUNCHER'" >&2
            return 2
            ;;
    esac
    cmd+=("$VARPRO_EXE" "$@")
    local line
    printf -v line '%q ' "${cmd[@]}"
    echo "command: ${line% }"
    if [ "$varpro_stopped" -eq 1 ]; then
        echo "not started: stopped by SIGUSR1; run the job again to resume"
        return 4
    fi

    # In the background, so that the shell can pass SIGUSR1 on while it waits
    "${cmd[@]}" &
    varpro_launcher_pid=$!
    local status=""
    while [ -z "$status" ]; do
        wait "$varpro_launcher_pid" && status=0 || status=$?
        # A trapped signal ends the wait with a status above 128 while the launcher still runs
        if [ "$status" -gt 128 ] && kill -0 "$varpro_launcher_pid" 2>/dev/null; then status=""; fi
    done
    varpro_launcher_pid=""
    echo "exit status $status at $(date '+%F %T')"
    return "$status"
}
