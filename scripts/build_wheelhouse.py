"""Download the GPU extras' wheels for an offline GPU machine: `make wheelhouse` calls this.

    python scripts/build_wheelhouse.py                          # Python 3.12, x86_64 -> wheelhouse/
    python scripts/build_wheelhouse.py --python 3.11 --arch aarch64 --out wh-arm

Run it where pip can reach the package index; copy the folder (every part1/, part2/, ... in it:
each part stays under 60 MiB, so one fits through a 64 MiB transfer) to the GPU machine and install
it there with `bash scripts/install_offline.sh wheelhouse/` (no network needed). The GPU machine
must already have a CUDA torch, transformers, peft and accelerate (see the README).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    try:
        import persrm_utils  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from persrm_utils.setup.wheelhouse import ARCHES, build

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python (major.minor)")
    parser.add_argument("--arch", default="x86_64", choices=ARCHES)
    parser.add_argument("--out", default="wheelhouse")
    args = parser.parse_args()
    info = build(Path(args.out), args.python, args.arch)
    n = sum(len(p["wheels"]) for p in info["parts"])
    print(f"{n} wheels, {info['total_mib']} MiB in {len(info['parts'])} parts under {args.out}/ "
          f"(Python {args.python}, {args.arch}; Unsloth's {info['unsloth_files_stripped']} "
          "web-app files left out):")  # fmt: skip
    for part in info["parts"]:
        print(f"  {part['folder']}: {len(part['wheels'])} wheels, {part['mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
