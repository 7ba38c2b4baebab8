#!/usr/bin/env bash
# Copy run records from a compare --output-dir into a folder of this reproduction, so that
# compare can rewrite the results pages from them. A finished run keeps its config, metrics,
# test predictions and features, but not its checkpoint. A diverged run keeps its config and error.
#
# Usage: bash examples/defrag/reproduction/collect.sh RUNS_FOLDER DESTINATION RUN_NAME...
# Example: bash examples/defrag/reproduction/collect.sh runs/defrag/table2 \
#              examples/defrag/reproduction/fashion-mnist/runs linear-seed0 defrag-polar-rsgd-seed0
set -euo pipefail

if [ "$#" -lt 3 ]; then
    echo "usage: $0 RUNS_FOLDER DESTINATION RUN_NAME..." >&2
    exit 2
fi
source_dir=$1
destination=$2
shift 2

for name in "$@"; do
    run="$source_dir/$name"
    if [ -f "$run/diverged.txt" ]; then
        # A diverged run is a result too: compare reads its config and the error that stopped it.
        mkdir -p "$destination/$name"
        cp "$run/config.json" "$run/diverged.txt" "$destination/$name/"
        continue
    fi
    for file in config.json metrics.json predictions.pt features.pt; do
        if [ ! -f "$run/$file" ]; then
            echo "$run/$file not found: is the run finished? Rerun its compare command first." >&2
            exit 1
        fi
    done
    mkdir -p "$destination/$name"
    cp "$run/config.json" "$run/metrics.json" "$run/predictions.pt" "$run/features.pt" \
        "$destination/$name/"
done
