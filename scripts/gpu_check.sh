#!/usr/bin/env bash
# Prepare the GPU check (bench/gpu_check.py, issue 17) for the device machine and print the exact call.
#
#   bash scripts/gpu_check.sh          # here, no GPU needed: wheels + spoken question into .whl/, size check
#
# The device machine (an H200; /work/.library/device/KINDS.md) has Python 3.12, torch 2.11,
# transformers 5.17, peft, accelerate, triton 3.6, no network, and lacks what this carries:
#   bitsandbytes 0.50.x  (NF4 storage and the reference the kernels are measured against)
#   silero-vad           (the voice path's voice-activity model; its needs are there already)
#   question.wav         (a spoken question: that machine has no speech synthesiser)
# The working tree plus carried files must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WHL=.whl
BNB=${BNB_VERSION:-0.50.2}
SILERO=${SILERO_VERSION:-$($PY -c "import importlib.metadata as m; print(m.version('silero-vad'))" 2>/dev/null || echo 6.2.0)}
mkdir -p "$WHL"
grep -qx '/.whl/' .gitignore || echo '/.whl/' >> .gitignore

fetch() {  # NAME==VERSION for CPython 3.12 on manylinux x86_64, once
  local name=${1%%==*}
  if ls "$WHL"/"${name//-/_}"-*.whl >/dev/null 2>&1; then return; fi
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    --platform any -d "$WHL" "$1"
}
fetch "bitsandbytes==$BNB"
fetch "silero-vad==$SILERO"

if [ ! -f "$WHL/question.wav" ]; then
  $PY - <<'PYEOF'
from app.voice.audio import resample
from app.voice.synth import synthesize
from app.voice.wav import write_wav

speech, rate = synthesize("What is the person holding in their left hand?")
write_wav(".whl/question.wav", resample(speech, rate, 16000), 16000)
PYEOF
fi

# What travels: tracked + untracked-not-ignored files, plus the carried .whl.
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -f "{}" && stat -c %s "{}"' | awk '{s+=$1} END {print s+0}')
carry=$(du -sb "$WHL" | cut -f1)
total=$((tree + carry))
limit=$((64 * 1024 * 1024))
awk -v t="$tree" -v c="$carry" -v w="$WHL" \
  'BEGIN { printf "working tree %.1f MiB + %s %.1f MiB = %.1f MiB (limit 64 MiB)\n", t/1048576, w, c/1048576, (t+c)/1048576 }'
ls -la "$WHL"
if [ "$total" -ge "$limit" ]; then
  echo "too large for the device machine: carry less" >&2
  exit 1
fi

cat <<'CALL'

The device call (tool `run`; one H200, at most 10 minutes a command):
  carry:     [".whl"]
  timeout_s: 600
  command:
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; export PYTHONUNBUFFERED=1 STREAMO_LIVE_DATA=/tmp/streamo-data STREAMO_QUESTION_WAV=.whl/question.wav HF_HUB_OFFLINE=1; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee $OUT/nvidia-smi.txt; set -o pipefail; timeout 560 python3 -m bench.gpu_check --out $OUT 2>&1 | tee $OUT/log.txt

To rerun parts: add --only PART[,PART] (selfcheck, kernels, engine, memory, train, voice, vision) and/or --models 7b.
CALL
