#!/usr/bin/env bash
# Train one bundled search_quality.py folder on a lent GPU host; what finished comes back in $OUT.
#
#   bash benchmarks/device_train.sh NAME [search_quality.py train options]
#
# Run from the repository root there, with the bundle carried (benchmarks/device_bundle.py
# writes it; BUNDLE, default runs/device). The recipe below is the one of BENCHMARKS.md's
# 12-epoch table; options given after NAME come later on the command line and so win.
# Trainings stop DEADLINE seconds after the start (default 500: a 600 s call leaves time to
# collect); every training that finished by then is in $OUT/results.json (or the --results
# file given; search_quality.py --stage collect). The trainings run in /tmp/device-train/NAME,
# outside the carried bundle (which each call replaces), so the same call again on a machine
# still warm trains only the rest.
set -u
name=${1:?usage: bash benchmarks/device_train.sh NAME [train options]}
shift
bundle=${BUNDLE:-runs/device}
out=${OUT:-/tmp/out}
work=/tmp/device-train/$name
start=$SECONDS
mkdir -p "$work" && cp -rn "$bundle/$name/." "$work/" || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$bundle"/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 "$bundle/shared/tools/cifar10_full.py" /tmp/data || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo "set up in $((SECONDS - start)) s"
recipe=(--epochs 12 --batch-size 256 --lr 0.2 --workers 1 --jobs 8 --train-set amp=off
        --train-set channels_last=true "$@")
left=$(( ${DEADLINE:-500} - (SECONDS - start) ))
(( left > 0 )) || left=1  # timeout 0 would mean no limit at all
# timeout stops the whole process group: the parallel trainings as well as their parent.
timeout --kill-after=10 $left \
    python3 benchmarks/search_quality.py --stage train --out "$work" \
    --data /tmp/data/cifar-10-batches-py "${recipe[@]}" 2>&1 | tee "$out/train.log"
python3 benchmarks/search_quality.py --stage collect --out "$work" "${recipe[@]}"
cp "$work"/results*.json "$out/" 2>/dev/null
echo "done in $((SECONDS - start)) s"
