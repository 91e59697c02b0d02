"""Regenerate data/bpftrace017.json: bpftrace 0.17's stdout for the user-space cases.

    sudo python tests/trace/gen_golden.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cases import CASES          # noqa: E402
from harness import HERE, bpftrace_version, run_bpftrace   # noqa: E402


def main() -> int:
    if bpftrace_version() is None or "v0.17" not in bpftrace_version():
        print("needs bpftrace 0.17", file=sys.stderr)
        return 1
    out = {}
    for c in CASES:
        if c.userspace:
            rc, stdout, err = run_bpftrace(c, None)
            out[c.id] = {"rc": rc, "stdout": stdout}
    (HERE / "data" / "bpftrace017.json").write_text(json.dumps(out, indent=1, sort_keys=True)
                                                    + "\n")
    print(f"{len(out)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
