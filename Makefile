# Quick start: `make run` (set up + start the app), `make test` (set up + run every test).
PY := .venv/bin/python

.PHONY: setup run demo test lint bench screenshot bundle

setup:
	bash scripts/setup.sh

run: setup
	$(PY) -m app.cli $(ARGS)

demo: setup
	$(PY) -m app.cli narrate --source assets/sample.mp4 --model demo --srt out/sample.srt

test: setup
	$(PY) -m pytest -q

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
