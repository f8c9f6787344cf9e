"""Prints gcovr's JSON summary as a table per module (src/<module>/) and per
file: lines and branches covered.  Used by scripts/coverage.sh."""
import json
import sys
from collections import defaultdict


def pct(c, t):
    return f"{100.0 * c / t:5.1f}%" if t else "    -"


def main(path):
    doc = json.load(open(path))
    mods = defaultdict(lambda: [0, 0, 0, 0])
    rows = []
    for f in doc["files"]:
        name = f["filename"]
        lc, lt, bc, bt = f["line_covered"], f["line_total"], f["branch_covered"], f["branch_total"]
        rows.append((name, lc, lt, bc, bt))
        parts = name.split("/")
        m = mods[parts[1] if len(parts) > 2 else "."]
        for i, v in enumerate((lc, lt, bc, bt)):
            m[i] += v
    print(f"{'module':<10} {'lines':>18} {'branches':>18}")
    tot = [0, 0, 0, 0]
    for name in sorted(mods):
        lc, lt, bc, bt = mods[name]
        tot = [a + b for a, b in zip(tot, mods[name])]
        print(f"{name:<10} {lc:>6}/{lt:<6} {pct(lc, lt)} {bc:>6}/{bt:<6} {pct(bc, bt)}")
    print(f"{'src/':<10} {tot[0]:>6}/{tot[1]:<6} {pct(tot[0], tot[1])} {tot[2]:>6}/{tot[3]:<6} {pct(tot[2], tot[3])}")
    print()
    print(f"{'file':<28} {'lines':>7} {'branches':>9}")
    for name, lc, lt, bc, bt in sorted(rows):
        print(f"{name:<28} {pct(lc, lt):>7} {pct(bc, bt):>9}")


if __name__ == "__main__":
    main(sys.argv[1])
