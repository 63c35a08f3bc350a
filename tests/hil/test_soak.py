"""500 vends over the lossy wire (5 % byte loss + 1 % bit flips, both directions): zero double
dispenses (the emulator's physical log has at most one motor run per tx) and every outcome known.

The 500 vends run on SOAK_CABINETS emulator processes side by side (one SerialLink each, like
kiosks sharing a test bench), 500 unique tx in all. Side by side because even with the lossy
wire's scaled-down link timers a vend costs about 0.6 s of mostly waiting for retransmissions
(measured), and the suite has a 3-minute budget; the count is not reduced.
Each vend is resolved as the sale layer would: ``vend``; on BoardOffline / VendTimeout ask
``outcome(tx)`` until final; on UNKNOWN_TX (the VEND never reached the board, which did not
reset) the same tx again, which is also the hardest test of the duplicate rules.
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kiosk.hardware.protocol import Outcome
from tests.support.hil import Resolved, Rig, vend_until_known

SOAK_VENDS = 500
SOAK_CABINETS = 5
TX_BASE = 10_000


def run_cabinet(rig: Rig, txs: list[int]) -> list[Resolved]:
    return [vend_until_known(rig.board, i % 60, tx) for i, tx in enumerate(txs)]


def test_500_lossy_vends_no_double_dispense_every_outcome_known(short_dir: Path) -> None:
    rigs: list[Rig] = []
    for i in range(SOAK_CABINETS):
        (short_dir / f"cab{i}").mkdir()
        rigs.append(Rig(short_dir / f"cab{i}", "lossy", time_scale=0.005, stock=20, seed=i + 1))
    txs = [TX_BASE + n for n in range(SOAK_VENDS)]
    shares = [txs[i::SOAK_CABINETS] for i in range(SOAK_CABINETS)]
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(SOAK_CABINETS) as pool:
            futures = [pool.submit(run_cabinet, r, s) for r, s in zip(rigs, shares, strict=True)]
            results = [f.result(timeout=600) for f in futures]
        counters = [r.link.counters() for r in rigs]
    finally:
        for rig in rigs:
            rig.close()
    elapsed = time.monotonic() - started

    resolved = {r.tx: r for part in results for r in part}
    assert sorted(resolved) == txs
    runs: dict[int, list[dict[str, object]]] = {}
    for rig in rigs:
        for tx, entries in rig.emu.runs().items():
            runs.setdefault(tx, []).extend(entries)

    double = {tx: e for tx, e in runs.items() if len(e) > 1}
    assert not double, f"double dispense: {double}"
    for tx, r in resolved.items():
        assert r.outcome.is_final and r.outcome is not Outcome.UNKNOWN_TX, r
        assert r.outcome is Outcome.DELIVERED, r  # no jams or blind sensors in this run
        [run] = runs[tx]  # it ran exactly once, and the kiosk knows how it ended
        assert run["result"] == r.outcome.name

    via = collections.Counter(r.via for r in resolved.values())
    total = {k: sum(c[k] for c in counters) for k in counters[0]}
    print(
        f"\nsoak: {SOAK_VENDS} vends on {SOAK_CABINETS} cabinets in {elapsed:.1f} s; "
        f"resolved by vend {via['vend']}, by later OUTCOME {via['outcome']}; link {total}"
    )
    # The wire really was bad, and the link saw it.
    assert total["retransmits"] > SOAK_VENDS and total["timeouts"] > 0
    assert total["crc_errors"] > 0 and total["bytes_discarded"] > 0
    assert via["outcome"] > 0  # some vends were resolved by asking, not by the vend call
