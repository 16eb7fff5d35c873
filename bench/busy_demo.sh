#!/usr/bin/env bash
# `make demo` on a quiet machine, then beside LOOPS busy-loop processes at nice 0 (default 10: a
# 5x oversubscribed 2-core machine), each from an empty state, in a fresh clone of this commit
# (with ../shared linked beside it), so the project's own mlflow/ and caches are not touched.
# Prints exit code, wall seconds, the test metrics and the decision of each run, the load average,
# and every process of the clone still alive after each run (there must be none). Installation and
# `dvc pull` happen first, untimed.
#
#     bash bench/busy_demo.sh [LOOPS]        # about 2 min + 25-50 min on a 2-core machine
set -u
loops=${1:-10}
repo=$(git rev-parse --show-toplevel)
work=$(mktemp -d /tmp/tlflow-busy-demo.XXXXXX)
git clone -q "$repo" "$work/main"
ln -s "$(realpath "$repo/../shared")" "$work/shared"
cd "$work/main"
make install data > "$work/install.log" 2>&1 || { echo "make install data failed: $work/install.log"; exit 1; }

survivors() { ps -eo pid,args | grep -F "$work/main" | grep -v -e grep -e "ps -eo" || echo "(none)"; }
demo() {
    local log="$work/$1.log" start rc
    start=$(date +%s.%N)
    make demo > "$log" 2>&1
    rc=$?
    echo "== $1: exit $rc, wall $(echo "$(date +%s.%N) - $start" | bc) s, load $(cut -d' ' -f1-3 /proc/loadavg)"
    grep -E "test_accuracy|became champion|stays challenger" "$log" | head -3
    sleep 3
    echo "processes of the clone still alive:"; survivors
}

demo quiet
rm -rf mlflow .prefect monitoring .cache/tlflow/tokenized .cache/tlflow/checkpoints .cache/tlflow/reports \
    .cache/tlflow/servers
pids=()
for _ in $(seq "$loops"); do python3 -c "while True: pass" & pids+=($!); done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
sleep 20
demo "busy-$loops"
echo "logs: $work/quiet.log $work/busy-$loops.log"
