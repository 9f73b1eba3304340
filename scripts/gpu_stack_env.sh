#!/usr/bin/env bash
# .venv-gpu-stack: the main .venv with the GPU machine's versions of transformers and its neighbours
# (requirements/gpu-stack.txt) installed over it, for `make test-gpu-stack`. The main .venv's
# site-packages comes after its own (a .pth line), so torch, bitsandbytes, peft ... are shared and only
# the listed packages differ (~160 MB). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
env=.venv-gpu-stack
stamp=$env/.streamo-installed
want=$(cat requirements/gpu-stack.txt requirements.lock | sha256sum | cut -d' ' -f1)
[[ -f $stamp && $(cat "$stamp") == "$want" ]] && exit 0
rm -rf "$env"
.venv/bin/python -m venv "$env"
site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
main=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$main" >"$site/_streamo_main_venv.pth"
if ! "$env/bin/python" -m pip install -q -r requirements/gpu-stack.txt >"$env/pip.log" 2>&1; then
  tail -n 40 "$env/pip.log" >&2
  echo "error: installing requirements/gpu-stack.txt failed; the full log is $env/pip.log" >&2
  exit 1
fi
echo "$want" >"$stamp"
