"""The technician's guide and docs/deploy.md install the kiosk the same way, in the layout the
update code uses (kiosk/update/supervisor.py: one venv per version under versions/, `current`
a symlink to the one that runs)."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _section_1(guide: str) -> str:
    return guide.split("\n## 1.", 1)[1].split("\n## 2.", 1)[0]


def _apt_packages(text: str) -> set[str]:
    m = re.search(r"apt-get install -y ((?:[^\n]|\\\n)+)", text)
    assert m, "no apt-get install line"
    return set(m.group(1).replace("\\\n", " ").split())


def test_guide_and_deploy_install_the_same_packages_into_the_update_layout() -> None:
    guide = _section_1((DOCS / "technician-guide.md").read_text(encoding="utf-8"))
    deploy = (DOCS / "deploy.md").read_text(encoding="utf-8")
    deploy_install = deploy.split("## Hardware and OS", 1)[1].split("\n## ", 1)[0]
    assert _apt_packages(guide) == _apt_packages(deploy_install)
    for text in (guide, deploy_install):
        assert "python3 -m venv /opt/kiosk/versions/$V" in text
        assert "ln -sfn versions/$V /opt/kiosk/current" in text
        assert "/opt/kiosk/venv" not in text  # a plain directory the update would not switch
        assert "kiosk release build" in text  # where the wheels come from
    assert "/opt/kiosk/venv" not in deploy


def test_guide_words() -> None:
    guide = (DOCS / "technician-guide.md").read_text(encoding="utf-8")
    assert "脚本顾客" not in guide  # a calque: 自动购物脚本 / 模拟顾客
    assert "私钥加密" not in guide  # the payment secret is sealed to the device's PUBLIC key
    assert "用本机公钥加密" in guide or "用本机的公钥" in guide
