#!/usr/bin/env bash
# Installs everything anygpt needs on a fresh Debian machine: system packages (apt),
# the emoji pictures (npm), and the Python package with all its extras (pip).
# Safe to re-run: each step skips what is already there.
#
#   bash scripts/setup.sh            # everything
#   ANYGPT_SKIP_APT=1 bash scripts/setup.sh   # Python only (no root)
#   bash scripts/setup.sh --llamacpp # also the llama.cpp backend (a source build, tens of minutes)
set -euo pipefail
WITH_LLAMACPP=""
for arg in "$@"; do
  case "$arg" in
    --llamacpp) WITH_LLAMACPP=1 ;;
    *) echo "setup: unknown option $arg (known: --llamacpp)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng  # TTS voices
  fluidsynth fluid-soundfont-gm                                                  # music rendering
  fonts-noto-color-emoji                                                         # emoji, 2nd style
  wordnet-base dict-gcide fortunes                                               # text
  default-jre-headless                                                           # pycocoevalcap (METEOR, PTB tokenizer)
  chromium chromium-driver                                                       # the demo's browser test (selenium)
  sox libsndfile1
  g++                                                                            # the native engine's C++ step
)
EMOJI_NPM="emoji-datasource-google@16.0.0"
ANYGPT_HOME="${ANYGPT_HOME:-$HOME/.cache/anygpt}"

if [ -z "${ANYGPT_SKIP_APT:-}" ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ ! -f "$ANYGPT_HOME/npm/node_modules/emoji-datasource-google/emoji.json" ]; then
  if command -v npm >/dev/null; then
    echo "setup: npm install $EMOJI_NPM into $ANYGPT_HOME/npm"
    mkdir -p "$ANYGPT_HOME/npm"
    npm install --silent --no-audit --no-fund --prefix "$ANYGPT_HOME/npm" "$EMOJI_NPM" >/dev/null 2>&1 \
      || echo "setup: warning: npm install of $EMOJI_NPM failed; emoji corpus will use the Noto font only"
  else
    echo "setup: warning: npm not found; emoji corpus will use the Noto font only"
  fi
fi

# torch first and pinned, so nothing else can pull another build.
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[all]"
# These declare dependencies we must not take (torch ranges, tensorflow, torchaudio); their real
# needs are in the [all] extra above (speechtokenizer's model code: torch, numpy, einops).
python3 -m pip install -q --no-deps "resemblyzer==0.1.4" "basic-pitch==0.4.0" "speechtokenizer==0.1.2"
if [ -n "$WITH_LLAMACPP" ] && ! python3 -c "import llama_cpp" 2>/dev/null; then
  # CPU only; no curl (nothing is downloaded at run time); the multimodal tools are not needed
  echo "setup: building llama-cpp-python (the llamacpp extra)"
  CMAKE_ARGS="-DLLAMA_CURL=OFF -DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    python3 -m pip install -q --no-deps "llama-cpp-python>=0.3.30"
fi
python3 -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "setup: done"
