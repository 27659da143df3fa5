#!/usr/bin/env bash
# Latency-table error on a lent GPU host's CPU, each build pinned to its own physical core with
# that core's other hyper-thread left idle; the results table comes back in $OUT/latency.log,
# the tables themselves (every block and network measured, to fit models to offline) in
# $OUT/tables.tar.gz.
#
#   bash benchmarks/device_latency.sh SPACE:RUNTIME... [-- latency_table.py options]
#
# Run from the repository root there, with the bundle of benchmarks/device_bundle.py carried
# (its wheels: the host lacks hydra and optuna; BUNDLE, default runs/device). At most one build
# per physical core runs at a time, the rest wait for a core; builds still running DEADLINE
# seconds after the start (default 240) are stopped and left out of the table.
set -u
bundle=${BUNDLE:-runs/device}
out=${OUT:-/tmp/out}
builds=()
while (( $# )) && [[ $1 != -- ]]; do builds+=("$1"); shift; done
[[ ${1:-} == -- ]] && shift
(( ${#builds[@]} )) || { echo "usage: bash benchmarks/device_latency.sh SPACE:RUNTIME... [-- options]"; exit 2; }
start=$SECONDS
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$bundle"/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
# The first logical CPU of each physical core; its siblings stay idle.
mapfile -t cores < <(cat /sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list \
                     | sort -u | sed 's/[,-].*//' | sort -n)
lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Core|Socket' | tee "$out/host.txt"
echo "physical cores used: ${cores[*]}" | tee -a "$out/host.txt"
python3 -c 'import torch, onnxruntime; print("torch", torch.__version__, "onnxruntime", onnxruntime.__version__)' \
    | tee -a "$out/host.txt"
deadline=${DEADLINE:-240}
logs=$(mktemp -d) tables=$(mktemp -d)
next=0
for build in "${builds[@]}"; do
    while (( $(jobs -rp | wc -l) >= ${#cores[@]} )); do wait -n; done
    space=${build%%:*} runtime=${build#*:}
    core=${cores[next % ${#cores[@]}]}
    next=$((next + 1))
    # A build that waited for a core gets what is left of the deadline.
    budget=$(( deadline - (SECONDS - start) ))
    (( budget > 0 )) || budget=1
    timeout "$budget" taskset -c "$core" python3 benchmarks/latency_table.py --spaces "$space" \
        --runtimes "$runtime" --out-dir "$tables" "$@" > "$logs/$space-$runtime.log" 2>&1 &
done
wait
{ cat "$out/host.txt"; echo; for log in "$logs"/*.log; do tail -n 1 "$log"; done; } \
    | tee "$out/latency.log"
tail -n 5 "$logs"/*.log > "$out/latency-tails.log"
tar -czf "$out/tables.tar.gz" -C "$tables" .
echo "done in $((SECONDS - start)) s"
