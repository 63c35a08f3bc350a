"""The long chaos suite: many sales under SIGKILL, broker restarts, TCP cuts, serial corruption,
board resets (SIGKILLs and resets aimed at running vends) and corrupt-store recoveries
(kiosk.sim.chaos); prints the report and a BENCH_JSON line.

    python bench/bench_chaos.py [--sales 100] [--seed 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, figure

from kiosk.sim.chaos import AIMED_KINDS, run_chaos


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sales", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--pace", type=float, default=0.5)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kiosk-chaos-long-"))
    rep = run_chaos(a.sales, a.seed, work, pace_s=a.pace, timeout_s=1200, say=print)
    print(rep.format())
    print(f"workdir: {work}")
    cmd = f"python bench/bench_chaos.py --sales {a.sales} --seed {a.seed}"
    faults = ", ".join(f"{k} x{v}" for k, v in sorted(rep.faults.items()))
    figs = [
        figure(
            "chaos",
            f"sales completed ({faults})",
            rep.sales_completed,
            "sales",
            goal=f"= {a.sales}",
            met=rep.finished and rep.sales_completed == a.sales,
            command=cmd,
        ),
    ]
    for name, v in (
        ("records lost", rep.records_lost),
        ("duplicates after dedupe", rep.duplicates_after_dedupe),
        ("double dispenses", rep.double_dispenses),
        ("orders with paid != delivered + refunded", rep.money_mismatches),
        ("hash-chain breaks", rep.chain_breaks),
        ("motor runs while the store was corrupt", rep.sold_while_corrupt),
    ):
        figs.append(figure("chaos", name, v, "count", goal="0", met=v == 0, command=cmd))
    hits = sum(rep.faults_during_vend.get(k, 0) for k in AIMED_KINDS)
    aimed = sum(rep.faults.get(k, 0) for k in AIMED_KINDS)
    figs.append(
        figure(
            "chaos",
            "SIGKILLs and board resets that hit a running vend",
            hits,
            "faults",
            goal=f">= {-(-aimed // 3)} (a third of {aimed})",
            met=3 * hits >= aimed,
            command=cmd,
        )
    )
    figs.append(figure("chaos", "lines refunded", rep.refunded_lines, "lines", command=cmd))
    figs.append(
        figure(
            "chaos",
            f"sales completed per minute (shopper pace {a.pace} s, faults included)",
            round(rep.sales_per_minute, 1),
            "sales/min",
            command=cmd,
        )
    )
    emit(figs)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
