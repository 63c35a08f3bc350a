"""`kiosk screenshot` writes a PNG of the asked size."""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from kiosk.sim.cli_screenshot import register


def test_screenshot_writes_png(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    common = argparse.ArgumentParser(add_help=False)
    register(parser.add_subparsers(dest="command"), common)
    out = tmp_path / "cart.png"
    args = parser.parse_args(
        ["screenshot", "--screen", "cart", "--size", "800x480", "--lang", "en", "--out", str(out)]
    )
    assert args.func(args) == 0
    with Image.open(out) as im:
        assert im.size == (800, 480)


def test_docs_set_writes_both_languages_scaled(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import kiosk.sim.cli_screenshot as cli

    monkeypatch.setattr(cli, "DOCS_SET", (("payment_offline", (800, 480), 0.75),))
    monkeypatch.setattr(cli, "DOCS_SET_LARGE", (("catalog", (800, 480), 0.75),))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"), argparse.ArgumentParser(add_help=False))
    args = parser.parse_args(["screenshot", "--docs", str(tmp_path)])
    assert args.func(args) == 0
    for lang in ("zh", "en"):
        with Image.open(tmp_path / f"payment_offline-800x480-{lang}.png") as im:
            assert im.size == (600, 360) and im.mode == "P"
        with Image.open(tmp_path / f"catalog-800x480-{lang}-large.png") as im:
            assert im.size == (600, 360) and im.mode == "P"


def test_docs_set_names_real_screens_and_the_docs_show_them() -> None:
    from kiosk.sim.cli_screenshot import DOCS_SET, DOCS_SET_LARGE, docs_name
    from kiosk.ui.app import SCREEN_NAMES

    doc = (Path(__file__).parents[2] / "docs" / "ui.md").read_text("utf-8")
    for large, docs_set in ((False, DOCS_SET), (True, DOCS_SET_LARGE)):
        for screen, size, _ in docs_set:
            assert screen in SCREEN_NAMES
            for lang in ("zh", "en"):
                name = "ui/" + docs_name(screen, size, lang, large)
                assert name in doc, name
                assert (Path(__file__).parents[2] / "docs" / name).is_file(), name


def test_screenshot_without_a_target_is_a_usage_error(capsys) -> None:  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"), argparse.ArgumentParser(add_help=False))
    args = parser.parse_args(["screenshot", "--screen", "cart"])
    assert args.func(args) == 2
    assert "--docs DIR" in capsys.readouterr().err
