#!/usr/bin/env bash
# Install what the DEFRAG example needs on a fresh Linux machine, then run its quick start:
# a short DEFRAG training run on Fashion-MNIST and the plots (python -m examples.defrag
# quickstart). Arguments are passed on to that command, e.g. --download or --data-dir FOLDER.
#
# Environment: PYTHON (default python3) creates the virtual environment VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

python=${PYTHON:-python3}
venv=${VENV:-.venv}

echo "== Python environment in $venv"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
if "$venv/bin/python" -c "import grassmann_nn, matplotlib, torchvision, tqdm" 2>/dev/null; then
    echo "grassmann_nn and the example's packages are already installed"
else
    "$venv/bin/python" -m pip install -q -e ".[examples]"
fi

echo "== Fashion-MNIST"
data_option_given=false
for argument in "$@"; do
    case "$argument" in
        --download | --data-dir | --data-dir=*) data_option_given=true ;;
    esac
done
if [ -d /usr/share/datasets/fashion-mnist ]; then
    echo "found Debian's dataset-fashion-mnist in /usr/share/datasets/fashion-mnist"
elif $data_option_given; then
    echo "using the --download or --data-dir option given"
elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
    echo "error: Fashion-MNIST was not found in /usr/share/datasets/fashion-mnist, and" \
        "apt-get is not available as root to install it (package dataset-fashion-mnist)." >&2
    echo "Rerun with --download to let torchvision download it, or with --data-dir FOLDER" \
        "for a folder that contains its four IDX files." >&2
    exit 1
fi

echo "== python -m examples.defrag quickstart $*"
exec "$venv/bin/python" -m examples.defrag quickstart "$@"
