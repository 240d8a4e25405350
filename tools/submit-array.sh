#!/usr/bin/env bash
# Submits a job file as a SLURM array of jobs/array.sbatch, one task per configuration.
#
#   tools/submit-array.sh [sbatch options] JOB.yaml [varpro-rbf options] [PETSc options]
#   tools/submit-array.sh --time=04:00:00 configs/demo.yaml -inner_kernel_mat_type matfree
#
# Options before the job file go to sbatch, each in one word (--time=04:00:00, not --time
# 04:00:00); those after it go to varpro-rbf. The configurations are counted with
# `varpro-rbf --list`. Prints the sbatch command, then the job id. VARPRO_EXE names the
# executable (default: build/varpro-rbf in this source tree); VARPRO_LAUNCHER and the rest of
# the environment reach the tasks (see jobs/launch.sh).
set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VARPRO_TOP=${VARPRO_TOP:-$top}
export VARPRO_EXE=${VARPRO_EXE:-$VARPRO_TOP/build/varpro-rbf}

# sbatch options, then the job file
sbatch_options=()
while [ $# -gt 0 ] && [[ "$1" == -* ]]; do
    sbatch_options+=("$1")
    shift
done
if [ $# -lt 1 ]; then
    echo "usage: $0 [sbatch options] JOB.yaml [varpro-rbf options] [PETSc options]" >&2
    exit 2
fi
# Absolute, since the tasks may run elsewhere (sbatch --chdir)
job=$(realpath -- "$1")
shift

# Configurations: --list prints a header, then one line per configuration, by index
listing=$("$VARPRO_EXE" --list "$job")
n=$(grep -c -E '^ *[0-9]+ ' <<<"$listing" || true)
if [ "$n" -lt 1 ]; then
    echo "$0: $job: no configuration listed by $VARPRO_EXE --list" >&2
    exit 1
fi

cmd=(sbatch --parsable --array="0-$((n - 1))" "${sbatch_options[@]}" "$VARPRO_TOP/jobs/array.sbatch" "$job" "$@")
printf -v line '%q ' "${cmd[@]}"
echo "${line% }"
id=$("${cmd[@]}")
echo "submitted job ${id%%;*}: $n array task(s) for $job"
