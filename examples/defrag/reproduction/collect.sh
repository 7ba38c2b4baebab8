#!/usr/bin/env bash
# Copy run records from a compare --output-dir into a folder of this reproduction, so that
# compare can rewrite the results pages from them. A finished run keeps its config, metrics,
# test predictions and features, but not its checkpoint. A diverged run keeps its config and error.
#
# With --tuning, the features are left out too: tune reads only the config, the metrics and the
# predictions (whose epoch shows that the run finished), so a tuning table can be rewritten.
#
# Usage: bash examples/defrag/reproduction/collect.sh [--tuning] RUNS_FOLDER DESTINATION RUN_NAME...
# Example: bash examples/defrag/reproduction/collect.sh runs/defrag/table2-tuned \
#              examples/defrag/reproduction/fashion-mnist/runs-tuned linear-seed0 defrag-polar-rsgd-seed0
set -euo pipefail

files="config.json metrics.json predictions.pt features.pt"
if [ "${1:-}" = "--tuning" ]; then
    files="config.json metrics.json predictions.pt"
    shift
fi
if [ "$#" -lt 3 ]; then
    echo "usage: $0 [--tuning] RUNS_FOLDER DESTINATION RUN_NAME..." >&2
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
    for file in $files; do
        if [ ! -f "$run/$file" ]; then
            echo "$run/$file not found: is the run finished? Rerun its command first." >&2
            exit 1
        fi
    done
    mkdir -p "$destination/$name"
    for file in $files; do
        cp "$run/$file" "$destination/$name/"
    done
done
