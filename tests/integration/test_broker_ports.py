"""The test brokers' ports: CI failed once because two listeners of one Mosquitto were given
the same port (the kernel hands out a port it just gave), and another test process can take a
chosen port before Mosquitto binds it. Both are shown against a real Mosquitto here."""

from __future__ import annotations

import socket
from pathlib import Path

from kiosk.sim.broker import Mosquitto, Pki, free_port, wait_port


def test_free_port_never_names_the_same_port_twice() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_port_taken_before_the_broker_binds_it_is_chosen_again(tmp_path: Path, pki: Pki) -> None:
    broker = Mosquitto(tmp_path / "broker", pki, bootstrap=True)
    first = broker.port
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.bind(("127.0.0.1", first))
    squatter.listen()
    try:
        broker.start()
        try:
            ports = {broker.port, broker.backend_port, broker.bootstrap_port}
            assert broker.port != first
            assert len(ports) == 3
            for port in ports:
                assert port is not None
                wait_port(port, 5.0)
            # A restart keeps the ports the clients were given.
            kept = (broker.port, broker.backend_port, broker.bootstrap_port)
            broker.stop()
            broker.start()
            assert (broker.port, broker.backend_port, broker.bootstrap_port) == kept
        finally:
            broker.stop()
    finally:
        squatter.close()


def test_a_port_the_caller_named_is_never_changed(tmp_path: Path, pki: Pki) -> None:
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    try:
        broker = Mosquitto(tmp_path / "broker", pki, port=taken)
        try:
            broker.start(timeout=5.0)
        except RuntimeError as e:
            assert "Address already in use" in str(e)
        else:
            broker.stop()
            raise AssertionError("Mosquitto started on a port another socket holds")
        assert broker.port == taken
    finally:
        squatter.close()
