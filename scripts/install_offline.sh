#!/usr/bin/env bash
# Install the GPU extras from a wheelhouse (built by `make wheelhouse`), with no network.
#
#   bash scripts/install_offline.sh wheelhouse/                  # into .gpu/site (default)
#   bash scripts/install_offline.sh wheelhouse/ --target DIR     # into DIR
#   bash scripts/install_offline.sh wheelhouse/ --active         # into the active environment
#   PYTHON=python3.12 bash scripts/install_offline.sh wheelhouse/
#
# The machine must already have a CUDA build of torch, transformers, peft and accelerate: the
# wheelhouse holds only what such a machine lacks, installed with --no-deps, in parts
# (wheelhouse/part1, part2, ...: copy them all). A --target folder leaves the system untouched;
# put it first on PYTHONPATH (the script prints the line). It ends by importing everything the
# GPU check imports (python -m persrm_utils.setup.import_check) and fails if anything is broken.
set -euo pipefail

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
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
REPO=$(cd "$(dirname "$0")/.." && pwd)
command -v "$PY" >/dev/null 2>&1 || die "no Python '$PY': set PYTHON=/path/to/python"
info=""
for f in "$WHEELHOUSE/wheelhouse.json" "$WHEELHOUSE"/part*/wheelhouse.json; do
  [ -f "$f" ] && { info="$f"; break; }
done

# Every part the build made must be here: a missing part fails later as an obscure import error.
if [ -n "$info" ]; then
  missing=$("$PY" - "$info" "$WHEELHOUSE" <<'PYEOF'
import json, os, sys
info, top = json.load(open(sys.argv[1])), sys.argv[2]
for part in info.get("parts", []):
    for wheel in part["wheels"]:
        if not os.path.isfile(os.path.join(top, part["folder"], wheel)):
            print(f"{part['folder']}/{wheel}")
PYEOF
)
  [ -z "$missing" ] || die "the wheelhouse is incomplete, missing: $(echo $missing | head -c 300). \
Copy every part (part1/, part2/, ...) of the folder \`make wheelhouse\` built"
fi
wheels=("$WHEELHOUSE"/*.whl "$WHEELHOUSE"/part*/*.whl)
[ ${#wheels[@]} -gt 0 ] || die "'$WHEELHOUSE' holds no .whl files: rebuild it with \`make wheelhouse\`"

# The wheels were downloaded for one Python version: say so before pip says something obscure.
have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -n "$info" ]; then
  want=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["python"])' "$info")
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

if PYTHONPATH="$site${site:+:}$REPO/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m persrm_utils.setup.import_check; then
  echo "Installed ${#wheels[@]} wheels."
else
  echo "install_offline.sh: installed, but the import check failed (above): a dependency the \
wheelhouse assumes present is missing" >&2
  exit 1
fi
if [ -n "$site" ]; then
  echo "Use it with:  export PYTHONPATH=$site:src\${PYTHONPATH:+:\$PYTHONPATH}"
fi
