#!/usr/bin/env bash
# Regenerate requirements.lock: the exact version of every Python package, for every platform
# and Python the project supports (uv's universal resolution), from pyproject.toml.
#   bash scripts/lock.sh                  keep every locked version that still fits pyproject.toml
#   bash scripts/lock.sh transformers     move one package (and what it needs) to its newest release
#   bash scripts/lock.sh --all            move everything to the newest releases pyproject.toml allows
# Then `make test` (it installs the new lock first) and commit requirements.lock with the change.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/uv ]] || .venv/bin/python -m pip install -q "uv>=0.9"
upgrade=()
for arg in "$@"; do
  if [[ $arg == --all ]]; then upgrade+=(--upgrade); else upgrade+=(--upgrade-package "$arg"); fi
done
.venv/bin/uv pip compile pyproject.toml --extra dev --universal --python-version 3.10 \
  --constraint requirements/lock-constraints.txt --custom-compile-command "make lock" \
  "${upgrade[@]}" --quiet --output-file requirements.lock
echo "wrote requirements.lock; now run: make test"
