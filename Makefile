# Quick start: `make run` (set up + start the app), `make test` (set up + run every test).
PY := .venv/bin/python

.PHONY: setup run demo test test-fast test-gpu-stack lock lint bench screenshot bundle

setup:
	bash scripts/setup.sh

run: setup
	$(PY) -m app.cli $(ARGS)

demo: setup
	$(PY) -m app.cli narrate --source assets/sample.mp4 --model demo --srt out/sample.srt

# Everything (CI): the whole suite with the 15 slowest tests listed, then the engine and kernel tests
# again on the GPU machine's transformers stack.
test: setup
	$(PY) -m pytest -q --durations=15
	$(MAKE) --no-print-directory test-gpu-stack

# The quick loop: everything but the slow end-to-end tests (real training runs, the demo adapter build,
# the data-parallel test, GUI training runs, real-time playback); under 3 minutes on 2 cores.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" --durations=5

# The engine, the KV cache and the kernels on the GPU machine's versions (requirements/gpu-stack.txt),
# with transformers' FutureWarning and DeprecationWarning as errors.
GPU_STACK_TESTS := tests/model/test_hf_compat.py tests/model/test_engine.py tests/model/kernels
test-gpu-stack: setup
	bash scripts/gpu_stack_env.sh
	.venv-gpu-stack/bin/python -m pytest -q -m "not slow" -W error::FutureWarning -W error::DeprecationWarning $(GPU_STACK_TESTS)

# Regenerate requirements.lock (uv): `make lock` keeps what still fits, `make lock UPGRADE=transformers`
# moves one package, `make lock UPGRADE=--all` moves everything. Then `make test`.
lock: setup
	bash scripts/lock.sh $(UPGRADE)

lint: setup
	.venv/bin/ruff check app model ui tests bench scripts

bench: setup
	$(PY) -m bench.bench_engine
	$(PY) -m bench.bench_kernels

screenshot: setup
	$(PY) scripts/screenshot.py

# A one-folder app in dist/streamo-live (about 5.5 GB with the CUDA build of torch).
bundle: setup
	.venv/bin/python -m pip install -q -e ".[build]"
	.venv/bin/pyinstaller build.spec --noconfirm --distpath dist --workpath build
