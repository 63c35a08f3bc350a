"""Fleet simulation sweep (kiosk.sim.fleet): N kiosks for a fixed time each, growing N until a
run loses records or p99 latency exceeds the goal; prints a table and a BENCH_JSON line.

    python bench/bench_fleet.py [--sizes 10,50,100,200,300] [--duration 40]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, figure

from kiosk.sim.fleet import run_fleet

P99_GOAL_MS = 2000.0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10,50,100,200")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--sale-rate", type=float, default=6.0, help="sales/kiosk/min (accelerated)")
    p.add_argument("--telemetry-s", type=float, default=30.0)
    a = p.parse_args()
    cmd = (
        f"python bench/bench_fleet.py --sizes {a.sizes} --duration {a.duration:g} "
        f"--sale-rate {a.sale_rate:g} --telemetry-s {a.telemetry_s:g}"
    )
    rows = []
    best = 0
    for n in (int(x) for x in a.sizes.split(",")):
        r = run_fleet(n, a.duration, sale_rate_per_min=a.sale_rate, telemetry_s=a.telemetry_s)
        print(r.format(), flush=True)
        rows.append(r)
        ok = r.zero_loss and (r.latency_p99_ms or 0) <= P99_GOAL_MS
        if not ok:
            break
        best = n
    print("\n| kiosks | sales | lost | msg/s | p50 ms | p99 ms | mosquitto CPU % | sim CPU % |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.kiosks} | {r.sales} | {r.lost} | {r.messages_per_s:.1f} | "
            f"{r.latency_p50_ms or 0:.0f} | {r.latency_p99_ms or 0:.0f} | "
            f"{r.broker_cpu_pct:.1f} | {r.sim_cpu_pct:.1f} |"
        )
    print(f"\nlargest N sustained with zero loss and p99 <= {P99_GOAL_MS:.0f} ms: {best}")
    figs = []
    for r in rows:
        figs.append(
            figure(
                "fleet",
                f"{r.kiosks} kiosks: messages/s",
                round(r.messages_per_s, 1),
                "msg/s",
                command=cmd,
            )
        )
        figs.append(
            figure(
                "fleet",
                f"{r.kiosks} kiosks: sale->ack latency p99",
                None if r.latency_p99_ms is None else round(r.latency_p99_ms),
                "ms",
                goal=f"<= {P99_GOAL_MS:.0f}",
                met=r.latency_p99_ms is not None and r.latency_p99_ms <= P99_GOAL_MS,
                baseline=None if r.latency_p50_ms is None else round(r.latency_p50_ms),
                baseline_name="p50",
                command=cmd,
            )
        )
        figs.append(
            figure(
                "fleet",
                f"{r.kiosks} kiosks: records lost",
                r.lost,
                "records",
                goal="0",
                met=r.zero_loss,
                command=cmd,
            )
        )
        figs.append(
            figure(
                "fleet",
                f"{r.kiosks} kiosks: mosquitto CPU / simulator CPU",
                round(r.broker_cpu_pct, 1),
                "% of a core",
                baseline=round(r.sim_cpu_pct, 1),
                baseline_name="simulator CPU",
                command=cmd,
            )
        )
    figs.append(
        figure(
            "fleet", "largest N sustained (zero loss, p99 within goal)", best, "kiosks", command=cmd
        )
    )
    emit(figs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
