#!/usr/bin/env bash
# Install the GPU extras from a wheelhouse (built by `make wheelhouse`), with no network.
#
#   bash scripts/install_offline.sh wheelhouse/                  # into .gpu/site (default)
#   bash scripts/install_offline.sh wheelhouse/ --target DIR     # into DIR
#   bash scripts/install_offline.sh wheelhouse/ --active         # into the active environment
#   PYTHON=python3.12 bash scripts/install_offline.sh wheelhouse/
#
# The machine must already have a CUDA build of torch, transformers, peft and accelerate: the
# wheelhouse holds only what such a machine lacks, installed with --no-deps. A --target folder
# leaves the system untouched; put it first on PYTHONPATH (the script prints the line).
set -euo pipefail

usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}
die() {
  echo "install_offline.sh: $1" >&2
  exit 2
}

WHEELHOUSE=""
TARGET=".gpu/site"
ACTIVE=0
PY="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --active) ACTIVE=1; shift ;;
    --target)
      [ $# -ge 2 ] || die "--target needs a folder"
      TARGET="$2"; shift 2 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *)
      [ -z "$WHEELHOUSE" ] || die "one wheelhouse folder only (got '$WHEELHOUSE' and '$1')"
      WHEELHOUSE="$1"; shift ;;
  esac
done

[ -n "$WHEELHOUSE" ] || { usage >&2; die "name the wheelhouse folder, e.g. wheelhouse/"; }
[ -d "$WHEELHOUSE" ] || die "no folder '$WHEELHOUSE': build it with \`make wheelhouse\` on a \
machine with package access, then copy it here"
shopt -s nullglob
wheels=("$WHEELHOUSE"/*.whl)
[ ${#wheels[@]} -gt 0 ] || die "'$WHEELHOUSE' holds no .whl files: rebuild it with \`make wheelhouse\`"
command -v "$PY" >/dev/null 2>&1 || die "no Python '$PY': set PYTHON=/path/to/python"

# The wheels were downloaded for one Python version: say so before pip says something obscure.
have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -f "$WHEELHOUSE/wheelhouse.json" ]; then
  want=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["python"])' \
    "$WHEELHOUSE/wheelhouse.json")
  [ "$have" = "$want" ] || die "the wheelhouse is for Python $want but $PY is $have: rebuild it \
with \`make wheelhouse WHEEL_PYTHON=$have\` or set PYTHON to a Python $want"
fi
"$PY" -c "import torch" 2>/dev/null \
  || echo "install_offline.sh: warning: torch is not importable with $PY; install a CUDA torch first" >&2

if [ "$ACTIVE" = 1 ]; then
  "$PY" -m pip install --no-index --no-deps "${wheels[@]}"
  site=""
else
  mkdir -p "$TARGET"
  "$PY" -m pip install --no-index --no-deps --upgrade --target "$TARGET" "${wheels[@]}"
  site=$(cd "$TARGET" && pwd)
fi

check="import trl, datasets, pydantic, tenacity, bitsandbytes; print('trl', trl.__version__, \
'datasets', datasets.__version__, 'bitsandbytes', bitsandbytes.__version__)"
if PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c "$check"; then
  echo "Installed ${#wheels[@]} wheels. Unsloth imports only on a CUDA GPU: \
\`python scripts/gpu_check.py\` reports it."
else
  echo "install_offline.sh: installed, but the import check failed (above): a dependency the \
wheelhouse assumes present is missing" >&2
  exit 1
fi
if [ -n "$site" ]; then
  echo "Use it with:  export PYTHONPATH=$site:src\${PYTHONPATH:+:\$PYTHONPATH}"
fi
