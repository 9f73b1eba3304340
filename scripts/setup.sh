#!/usr/bin/env bash
# Set up Streamo Live on a fresh Debian/Ubuntu machine: system packages (where we may install
# them), a virtual environment in .venv with the locked packages (requirements.lock) and the project
# with its dev tools. Idempotent: a second run only re-installs when requirements.lock or
# pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(
  espeak-ng libespeak-ng1 libportaudio2        # text-to-speech (pyttsx3) and microphones (sounddevice)
  xvfb xauth                                   # a virtual X screen for screen-capture tests and screenshots
  openbox xdotool x11-utils                    # a window manager and real clicks (the overlay and window-picker
                                               # tests); xwininfo for Pick a window...
  libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0
  libxcb-render-util0 libxcb-image0 libxcb-xfixes0 libx11-xcb1 fonts-dejavu-core  # Qt's xcb platform
)

missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else SUDO="none"; fi
  if [[ $SUDO == none ]] || ! command -v apt-get >/dev/null; then
    echo "warning: please install these system packages yourself: ${missing[*]}" >&2
  else
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PYTHON=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
stamp=.venv/.streamo-installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "installing the locked Python packages into .venv (torch is a large download on first run; log: .venv/pip.log)"
  pip_install() {
    if ! .venv/bin/python -m pip install -q "$@" >>.venv/pip.log 2>&1; then
      tail -n 40 .venv/pip.log >&2
      echo "error: pip install $* failed; the full log is .venv/pip.log" >&2
      exit 1
    fi
  }
  : >.venv/pip.log
  # Exactly the versions CI tested (requirements.lock, made by `make lock`), then the project itself.
  pip_install -r requirements.lock
  pip_install --no-deps -e .
  echo "$want" >"$stamp"
fi
