"""The short chaos suite (CI): 12 sales while the kiosk is SIGKILLed, Mosquitto restarted, TCP
cut, serial bytes corrupted, the board reset and the store corrupted and recovered (salvaged),
the SIGKILLs and resets aimed at running vends (motors at time-scale 0.2: a turn is 0.3-0.6 s),
once on our own board and once on a VMC (`--protocol vmc`);
then the province's ledger, the emulator's
physical log and the kiosk's own books must agree (kiosk.sim.chaos). The long version is
`python bench/bench_chaos.py` (or `python -m kiosk.sim.chaos --sales N`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.sim.chaos import FAULT_KINDS, run_chaos
from kiosk.sim.mqtt_tap import TappedMessage
from tests.support.mqtt_record import check_messages, format_violations


@pytest.mark.slow
@pytest.mark.timeout(330)  # generous: a loaded 2-core machine (about 35 s when quiet)
@pytest.mark.parametrize("protocol", ["kiosk", "vmc"])
def test_chaos_short(tmp_path: Path, protocol: str) -> None:
    """On our own board and on a VMC (docs/boards/vmc.md: no tx, so the physical log is
    matched by slot, and a vend a SIGKILL or reset made unknown is refunded); every MQTT
    message either way is checked against docs/mqtt-api.yaml."""
    recorded: list[TappedMessage] = []
    rep = run_chaos(
        12,
        seed=3,
        workdir=tmp_path / "chaos",
        n_faults=7,
        timeout_s=280,
        protocol=protocol,
        record_mqtt=recorded,
    )
    print(rep.format())
    assert rep.finished, rep.format()
    assert all(rep.faults.get(k, 0) >= 1 for k in FAULT_KINDS), rep.faults
    assert rep.sales_completed == 12
    assert rep.records_lost == 0, rep.format()
    assert rep.duplicates_after_dedupe == 0, rep.format()
    assert rep.double_dispenses == 0, rep.format()
    assert rep.money_mismatches == 0, rep.format()
    assert rep.chain_breaks == 0, rep.format()
    assert rep.corrupt_start_tracebacks == 0, rep.format()
    assert rep.sold_while_corrupt == 0, rep.format()
    assert rep.store_recoveries == rep.faults["store"], rep.format()
    assert rep.kiosk_ledger_records == rep.province_sale_records == 12
    # the faults are aimed: SIGKILLs and board resets land on a running vend, at least a third
    # of them (an aimed reset can still miss when the motor stops first: not one of each)
    hit = rep.faults_during_vend
    assert hit.get("kill9", 0) + hit.get("reset", 0) >= 1, rep.format()
    aimed = rep.faults["kill9"] + rep.faults["reset"]
    assert 3 * (hit.get("kill9", 0) + hit.get("reset", 0)) >= aimed, rep.format()
    # every message that crossed the broker through all of it is what docs/mqtt-api.yaml says
    assert any(m.topic.endswith("/events/sale") for m in recorded)
    violations = check_messages(recorded)
    assert violations == [], format_violations(violations, "in the chaos run")
