#!/usr/bin/env python3
"""Paired comparison of two ConvAI2 runs' summary.csv files (standard library only).

Pairs the rows of A and B on (method, finetune, rank, seed, task) and prints, per (method, finetune,
rank) and statistic (`best`, `last`), the mean hits@1 of each run, the mean paired difference B - A in
points with a 95 % paired t interval over the cells, and win / loss / tie counts. Used for the pair-format
measurement in docs/results/convai2.md:

    python3 scripts/compare_summaries.py results/convai2/standard/summary.csv \
        results/convai2/standard-paper-format/summary.csv --seeds 0
"""
import argparse
import csv
import math
import statistics
from collections import defaultdict

# Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom; normal beyond.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042]


def t975(df):
    return T975[df - 1] if df <= len(T975) else 1.960


def load(path, seeds):
    rows = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r.get("failure"):
                continue
            if seeds is not None and int(r["seed"]) not in seeds:
                continue
            key = (r["method"], r["finetune"], r["rank"], r["seed"], r["task"])
            rows[key] = r
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", help="summary.csv of run A")
    p.add_argument("b", help="summary.csv of run B")
    p.add_argument("--seeds", type=int, nargs="*", help="only these seeds")
    args = p.parse_args()
    seeds = set(args.seeds) if args.seeds else None
    a, b = load(args.a, seeds), load(args.b, seeds)
    groups = defaultdict(list)
    for key in sorted(a.keys() & b.keys()):
        groups[key[:3]].append(key)
    if not groups:
        raise SystemExit("no (method, finetune, rank, seed, task) cell is in both files")
    print(f"A = {args.a}\nB = {args.b}")
    print(f"{'method':<10} {'finetune':<8} {'rank':>4} {'stat':<4} {'cells':>5} {'A %':>6} {'B %':>6} "
          f"{'B-A':>6} {'95% CI':>16} {'B wins/losses/ties':>19}")
    for (method, finetune, rank), keys in sorted(groups.items()):
        for stat in ("best", "last"):
            xa = [100 * float(a[k][stat]) for k in keys]
            xb = [100 * float(b[k][stat]) for k in keys]
            d = [y - x for x, y in zip(xa, xb)]
            n = len(d)
            mean = statistics.fmean(d)
            half = t975(n - 1) * statistics.stdev(d) / math.sqrt(n) if n > 1 else float("nan")
            wins = sum(x > 0 for x in d)
            losses = sum(x < 0 for x in d)
            print(f"{method:<10} {finetune:<8} {rank:>4} {stat:<4} {n:>5} {statistics.fmean(xa):>6.2f} "
                  f"{statistics.fmean(xb):>6.2f} {mean:>+6.2f} [{mean - half:>+6.2f}, {mean + half:>+6.2f}] "
                  f"{wins:>7}/{losses}/{n - wins - losses}")


if __name__ == "__main__":
    main()
