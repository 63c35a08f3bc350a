"""Production installs pin hashes (issue 14 req. 10): scripts/wheelhouse.py builds a wheelhouse
(the kiosk wheel + every runtime dependency as wheels, pinned by constraints.txt) and
requirements.lock with each wheel's SHA-256; docs/deploy.md installs it with
`pip install --no-index --require-hashes`.

The slow test builds a real wheelhouse (the kiosk wheel by `pip wheel --no-deps`, the
dependencies by `pip download` from the package index, or pip's cache), installs it into a
fresh venv with no index at all, runs the installed `kiosk`, and shows that one tampered wheel
makes the whole install refuse.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "wheelhouse.py"
RUNTIME = {"kiosk", "pyserial", "paho-mqtt", "qrcode", "pillow", "pygame", "cryptography"}


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wheelhouse_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lock_lists_every_wheel_with_its_hash(tmp_path: Path) -> None:
    wh = script()
    for name in (
        "paho_mqtt-2.2.0-py3-none-any.whl",
        "cffi-2.1.1-cp311-cp311-manylinux2014_x86_64.whl",
        "cffi-2.1.1-cp311-cp311-manylinux2014_aarch64.whl",
    ):
        (tmp_path / name).write_bytes(name.encode())
    text = wh.lock_text(wh.wheels_in(tmp_path))
    entries = [e for e in text.split("\n") if not e.startswith("#")]
    assert entries[0] == "cffi==2.1.1 \\"
    assert entries[1].strip().startswith("--hash=sha256:") and entries[1].endswith(" \\")
    assert entries[2].strip().startswith("--hash=sha256:") and not entries[2].endswith("\\")
    assert entries[3] == "paho-mqtt==2.2.0 \\"
    assert wh.sha256(tmp_path / "paho_mqtt-2.2.0-py3-none-any.whl") in entries[4]
    pins = wh.read_constraints(ROOT / "constraints.txt")
    assert "paho-mqtt" in pins
    assert "typing-extensions" in pins  # canonical names


def _clean_pip_env(**extra: str) -> dict[str, str]:
    """No index, no extra find-links, no config: only what the command line names; and no
    PYTHONPATH (the source tree must not stand in for the installed kiosk)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHONPATH"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def test_build_install_with_require_hashes_and_refuse_a_tampered_wheel(tmp_path: Path) -> None:
    house = tmp_path / "wheelhouse"
    build = subprocess.run(
        [sys.executable, str(SCRIPT), str(house)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr[-4000:]
    lock = house / "requirements.lock"
    names = {line.split("==")[0] for line in lock.read_text().splitlines() if "==" in line}
    assert names >= RUNTIME, names
    assert all("--hash=sha256:" in e for e in lock.read_text().split("==")[1:])

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)

    def install(source: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index"),
                *("--find-links", str(source), "--require-hashes", "-r", str(lock)),
            ],
            capture_output=True,
            text=True,
            env=_clean_pip_env(),
            timeout=600,
        )

    # one byte changed in one wheel: pip refuses the whole install
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for w in house.iterdir():
        (tampered / w.name).write_bytes(w.read_bytes())
    victim = next(tampered.glob("qrcode-*.whl"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    bad = install(tampered)
    assert bad.returncode != 0
    assert "DO NOT MATCH THE HASHES" in bad.stderr, bad.stderr[-3000:]
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        env=_clean_pip_env(),
        timeout=120,
    )
    assert "kiosk==" not in listed.stdout  # nothing of it was installed

    good = install(house)
    assert good.returncode == 0, good.stderr[-3000:]
    version = subprocess.run(
        [str(venv / "bin" / "kiosk"), "--version"],
        capture_output=True,
        text=True,
        env=_clean_pip_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert version.returncode == 0 and version.stdout.startswith("kiosk "), version
