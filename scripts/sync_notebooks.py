"""Strip outputs and regenerate the Colab cell and badge of every notebook.

python scripts/sync_notebooks.py          # rewrite notebooks/NN_*.ipynb (series and solutions)
python scripts/sync_notebooks.py --check  # only report; exit 1 when something is out of step
"""

from __future__ import annotations

import sys

from persrm_utils.setup.notebooks import committed_notebooks, problems, sync


def main(argv: list[str]) -> int:
    check = "--check" in argv
    bad = 0
    for path in committed_notebooks():
        if check:
            for problem in problems(path):
                print(f"{path.name}: {problem}")
                bad += 1
        elif sync(path):
            print(f"updated {path.name}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
