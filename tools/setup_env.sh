#!/usr/bin/env bash
# Build .venv with the proven CPU stack (README "Installation"). Idempotent:
# a stamp of the requirement files makes a second run a check of seconds.
#
# mmcv 2.1.0 has no binary wheel on PyPI, so it is compiled with its ops. The
# wheel is looked up, in order, in $PNS_WHEEL_DIR, ../shared/wheels (when it
# fits this torch) and the user cache
# ${XDG_CACHE_HOME:-~/.cache}/pns_mmdet/wheels/torch-<version>-<pytag>/, and built
# into that cache otherwise (6-10 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
MMCV_VERSION=2.1.0
STAMP="$VENV/.pns_env_stamp"

fingerprint() {
    cat requirements/*.txt setup.py tools/setup_env.sh | sha256sum | cut -d' ' -f1
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(fingerprint)" ]] \
        && "$VENV/bin/python" -c "import mmcv.ops, pns_mmdet.version" 2>/dev/null; then
    echo "[setup_env] $VENV is up to date"
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[setup_env] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
export PIP_DISABLE_PIP_VERSION_CHECK=1

echo "[setup_env] installing build requirements and torch"
"${PIP[@]}" install -q -r requirements/build.txt \
    "$(grep -E '^torch==' requirements/runtime.txt)" \
    "$(grep -E '^torchvision==' requirements/runtime.txt)"

have_mmcv_ops() {
    "$VENV/bin/python" - <<PY 2>/dev/null
import mmcv, mmcv.ops
assert mmcv.__version__ == "$MMCV_VERSION"
PY
}

if ! have_mmcv_ops; then
    TORCH_VERSION=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
    PYTAG=$("$VENV/bin/python" -c "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')")
    CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/pns_mmdet/wheels/torch-${TORCH_VERSION/+/_}-${PYTAG}"
    CANDIDATES=()
    [[ -n "${PNS_WHEEL_DIR:-}" ]] && CANDIDATES+=("$PNS_WHEEL_DIR")
    # The shared wheel was built against the registry's torch 2.13.0 only.
    [[ "${TORCH_VERSION%%+*}" == "2.13.0" && "$TORCH_VERSION" != *+cpu ]] \
        && CANDIDATES+=("../shared/wheels")
    CANDIDATES+=("$CACHE_DIR")
    WHEEL=""
    for dir in "${CANDIDATES[@]}"; do
        found=$(ls "$dir"/mmcv-${MMCV_VERSION}-${PYTAG}-${PYTAG}-linux_*.whl 2>/dev/null | head -n 1 || true)
        if [[ -n "$found" ]]; then WHEEL=$found; break; fi
    done
    if [[ -z "$WHEEL" ]]; then
        echo "[setup_env] building mmcv $MMCV_VERSION with ops into $CACHE_DIR (6-10 min)"
        mkdir -p "$CACHE_DIR"
        MMCV_WITH_OPS=1 FORCE_CUDA=${FORCE_CUDA:-0} MAX_JOBS=${MAX_JOBS:-2} \
            "${PIP[@]}" wheel --no-build-isolation --use-pep517 --no-deps \
            -w "$CACHE_DIR" "mmcv==$MMCV_VERSION"
        WHEEL=$(ls "$CACHE_DIR"/mmcv-${MMCV_VERSION}-*.whl | head -n 1)
    fi
    echo "[setup_env] installing $WHEEL"
    "${PIP[@]}" install -q --no-deps "$WHEEL"
fi

echo "[setup_env] installing runtime and test requirements"
"${PIP[@]}" install -q -r requirements/runtime.txt -r requirements/tests.txt
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .
have_mmcv_ops || { echo "[setup_env] mmcv.ops is not importable" >&2; exit 1; }
fingerprint > "$STAMP"
echo "[setup_env] done: $("$VENV/bin/python" -c 'import torch, mmcv, mmdet; print("torch", torch.__version__, "mmcv", mmcv.__version__, "mmdet", mmdet.__version__)')"
