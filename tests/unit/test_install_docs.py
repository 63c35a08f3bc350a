"""The technician's guide and docs/deploy.md install the kiosk the same way, in the layout the
update code uses (kiosk/update/supervisor.py: one venv per version under versions/, `current`
a symlink to the one that runs). The guide verifies a release before it installs anything, with
commands that work before the kiosk exists (openssl, python3's standard library), and its
Chinese keeps the wording a native reviewer asked for."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from kiosk.update.release import generate_release_key, write_manifest

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


def _verify_block(guide_section_1: str) -> str:
    blocks = re.findall(r"```sh\n(.*?)```", guide_section_1, re.S)
    return blocks[0]


def test_guide_verifies_the_release_before_installing_anything() -> None:
    section = _section_1((DOCS / "technician-guide.md").read_text(encoding="utf-8"))
    verify = section.index("openssl pkeyutl -verify")
    assert verify < section.index("apt-get install")
    assert verify < section.index("bin/pip install")
    assert "pip install" not in _verify_block(section)


def _run_verify(
    block: str, release: Path, key: Path, tmp: Path
) -> subprocess.CompletedProcess[str]:
    script = (
        block.replace("/media/usb/kiosk-$V", str(release))
        .replace("/media/usb/release-key.pub", str(key))
        .replace("/tmp/kiosk-release", str(tmp / "kiosk-release"))
    )
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp
    )


def test_guide_verification_commands_pass_a_good_release_and_stop_a_bad_one(
    tmp_path: Path,
) -> None:
    """The section-1 commands (openssl + python3 stdlib, nothing of the kiosk installed yet)
    accept a release signed by the release key and reject an altered one."""
    block = _verify_block(_section_1((DOCS / "technician-guide.md").read_text(encoding="utf-8")))
    good = tmp_path / "good"
    (good / "wheels").mkdir(parents=True)
    (good / "wheels" / "kiosk-0.2.0-py3-none-any.whl").write_bytes(b"wheel bytes")
    (good / "wheels" / "requirements.lock").write_text("kiosk==0.2.0 --hash=sha256:00\n")
    key_id = generate_release_key(tmp_path / "release.pem", tmp_path / "release.pub")
    generate_release_key(tmp_path / "other.pem", tmp_path / "other.pub")
    write_manifest(good, tmp_path / "release.pem", version="0.2.0", store_schema=(0, 1))

    ok = _run_verify(block, good, tmp_path / "release.pub", tmp_path)
    assert ok.stdout.splitlines()[0] == key_id  # the id `kiosk release verify` prints
    assert "Signature Verified Successfully" in ok.stdout
    assert "release verified" in ok.stdout, ok.stdout + ok.stderr

    wheel = tmp_path / "wheel"
    shutil.copytree(good, wheel)
    (wheel / "wheels" / "kiosk-0.2.0-py3-none-any.whl").write_bytes(b"altered")
    manifest = tmp_path / "manifest"
    shutil.copytree(good, manifest)
    text = (manifest / "manifest.json").read_text(encoding="utf-8")
    altered = text.replace('"notes": ""', '"notes": "x"')  # every file still matches
    assert altered != text
    (manifest / "manifest.json").write_text(altered, encoding="utf-8")
    for release, key in (
        (wheel, tmp_path / "release.pub"),
        (manifest, tmp_path / "release.pub"),
        (good, tmp_path / "other.pub"),
    ):
        bad = _run_verify(block, release, key, tmp_path)
        assert "release verified" not in bad.stdout, (release, key, bad.stdout)


def test_guide_words() -> None:
    guide = (DOCS / "technician-guide.md").read_text(encoding="utf-8")
    assert "脚本顾客" not in guide  # a calque: 自动购物脚本 / 模拟顾客
    assert "私钥加密" not in guide  # the payment secret is sealed to the device's PUBLIC key
    assert "用本机公钥加密" in guide or "用本机的公钥" in guide
    # issue 17 req. 9, a native reviewer's list: 货道表 for the planogram, 查询 for polling,
    # 控制板 for the cabinet's boards, 你 throughout
    for calque in ("规划表", "探询", "那把钥匙", "主板 0 号", "安卓主板", "您"):
        assert calque not in guide, calque
