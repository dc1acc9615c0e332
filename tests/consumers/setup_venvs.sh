#!/usr/bin/env bash
# Builds (once) the separate virtual environments the consumer tests run real trainers in.
#
#   swift        ms-swift 4.6 pins transformers < 5.20, so it cannot share the project's
#                environment. CPU-only torch 2.13, transformers < 5.20, ms-swift, qwen-vl-utils.
#                torchvision is deliberately NOT installed: the only torchvision wheels pip
#                can get here are CUDA builds (0.28 needs libtorch_cuda, 0.29 needs torch 2.14)
#                and both break `import torchvision` next to the CPU torch. Images go through
#                PIL only (qwen-vl-utils fetch_image, transformers' PIL image processor); the
#                test driver stubs qwen-vl-utils' module-level torchvision import (video only).
#   labelstudio  label-studio-sdk pins numpy/opencv versions the project's environment does
#                not use; the tests only need its LabelInterface (no server).
#
# Usage: tests/consumers/setup_venvs.sh [swift|labelstudio|all]   (default: all)
# Locations: $AUTOLABEL_SWIFT_VENV, $AUTOLABEL_LABELSTUDIO_VENV, defaulting to
# ~/.cache/autolabel/{swift,labelstudio}-venv (outside the checkout).
# Idempotent: a stamp file records the requirement set; a venv whose stamp matches and whose
# check passes is left alone, so a second run only imports each venv's packages once.
set -euo pipefail

cache="${XDG_CACHE_HOME:-$HOME/.cache}/autolabel"
python_bin="${AUTOLABEL_VENV_PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3

pip_quiet() {  # pip's "Location ... is ignored" notes for this machine's local indexes are noise
  "$@" 2> >(grep -v "^WARNING: Location '" >&2)
}

build() {  # build NAME VENV CHECK_PY REQ...
  local name="$1" venv="$2" check_py="$3"
  shift 3
  local stamp="$venv/.autolabel-stamp" stamp_text="$*"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_text" ] \
    && "$venv/bin/python" -c "$check_py" >/dev/null 2>&1; then
    echo "$name venv: up to date ($venv)" >&2
    return 0
  fi
  echo "$name venv: building $venv ($stamp_text)" >&2
  mkdir -p "$(dirname "$venv")"
  "$python_bin" -m venv "$venv"
  pip_quiet "$venv/bin/python" -m pip install -q --upgrade pip
  pip_quiet "$venv/bin/python" -m pip install -q "$@"
  "$venv/bin/python" -c "$check_py"
  echo "$stamp_text" > "$stamp"
}

swift_check='
import importlib.metadata, importlib.util, sys
import torch, transformers, swift
importlib.metadata.version("qwen-vl-utils")  # imported by the driver behind its torchvision stub
if importlib.util.find_spec("torchvision") is not None:
    sys.exit("torchvision must not be installed in the swift venv")
print(f"swift venv ok: torch {torch.__version__}, transformers {transformers.__version__}")
'
ls_check='
from label_studio_sdk.label_interface import LabelInterface
print("labelstudio venv ok")
'

what="${1:-all}"
case "$what" in swift | labelstudio | all) ;; *) echo "usage: $0 [swift|labelstudio|all]" >&2; exit 2 ;; esac
if [ "$what" != labelstudio ]; then
  # The +cpu wheel comes from the local wheel folder / index in pip's config; resolving it
  # together with ms-swift keeps accelerate/peft/trl from pulling a CUDA torch.
  build swift "${AUTOLABEL_SWIFT_VENV:-$cache/swift-venv}" "$swift_check" \
    "torch==2.13.0+cpu" "transformers>=4.57,<5.20" "ms-swift==4.6.0" "qwen-vl-utils>=0.0.14"
fi
if [ "$what" != swift ]; then
  build labelstudio "${AUTOLABEL_LABELSTUDIO_VENV:-$cache/labelstudio-venv}" "$ls_check" \
    "label-studio-sdk==2.1.2"
fi
