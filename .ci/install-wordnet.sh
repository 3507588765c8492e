#!/usr/bin/env bash
# Make Princeton WordNet 3.0 available to nltk, idempotently and quietly.
#   1. Debian/Ubuntu: apt-get install wordnet-base wordnet-sense-index (as root or
#      via sudo) when /usr/share/wordnet lacks them; pml_shrewd lays the files out
#      for nltk itself on first use (see pml_shrewd/semantic_distances/wordnet.py).
#   2. Otherwise: python -m nltk.downloader wordnet (needs internet).
# Usage: .ci/install-wordnet.sh [python]   (default: $PYTHON, .venv/bin/python, python3)
set -euo pipefail

PY="${1:-${PYTHON:-}}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
WN_DIR="${PML_SHREWD_WORDNET_DIR:-/usr/share/wordnet}"

have_debian_files() { [ -f "$WN_DIR/data.noun" ] && [ -f "$WN_DIR/index.noun" ] && [ -f "$WN_DIR/index.sense" ]; }

have_nltk_wordnet() {
  "$PY" - <<'PY' >/dev/null 2>&1
import nltk
for name in ("corpora/wordnet.zip", "corpora/wordnet"):
    try:
        nltk.data.find(name)
        raise SystemExit(0)
    except LookupError:
        pass
raise SystemExit(1)
PY
}

if have_debian_files || have_nltk_wordnet; then
  exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
  if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    if $SUDO apt-get install -y -qq --no-install-recommends wordnet-base wordnet-sense-index >/dev/null 2>&1 \
      && have_debian_files; then
      exit 0
    fi
  fi
fi

echo "install-wordnet: Debian packages unavailable, trying the nltk downloader" >&2
"$PY" -m nltk.downloader -q wordnet
have_nltk_wordnet || { echo "install-wordnet: WordNet is still missing" >&2; exit 1; }
