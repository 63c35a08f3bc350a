#!/usr/bin/env python3
"""Build a production wheelhouse: the kiosk wheel, every runtime dependency as a wheel pinned by
constraints.txt, and `requirements.lock` with the SHA-256 of each wheel, for

    pip install --no-index --find-links WHEELHOUSE --require-hashes -r WHEELHOUSE/requirements.lock

(docs/deploy.md, "Production install: pinned hashes"). The work is kiosk/update/wheelhouse.py
(also used by `kiosk release build`), loaded here by path: standard library and pip only, it
never imports the kiosk, so it runs from a clean clone with any Python 3.11+.

    python3 scripts/wheelhouse.py OUT [--constraints constraints.txt] [--project .]
        [--platform manylinux_2_17_aarch64 ...] [--python-version 3.11]
        [--find-links DIR ...] [--no-index]

Refuses (exit 1, naming it) a dependency that constraints.txt does not pin.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load() -> object:
    spec = importlib.util.spec_from_file_location(
        "kiosk_wheelhouse", ROOT / "kiosk" / "update" / "wheelhouse.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


_wh = _load()
LOCK_NAME = _wh.LOCK_NAME  # type: ignore[attr-defined]
WheelhouseError = _wh.WheelhouseError  # type: ignore[attr-defined]
build_wheelhouse = _wh.build_wheelhouse  # type: ignore[attr-defined]
canonical = _wh.canonical  # type: ignore[attr-defined]
lock_text = _wh.lock_text  # type: ignore[attr-defined]
read_constraints = _wh.read_constraints  # type: ignore[attr-defined]
sha256 = _wh.sha256  # type: ignore[attr-defined]
wheels_in = _wh.wheels_in  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="wheelhouse.py", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="the wheelhouse directory (created)")
    p.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    p.add_argument("--project", type=Path, default=ROOT, help="the kiosk source tree")
    p.add_argument(
        "--platform",
        action="append",
        default=[],
        help="target platform tag, e.g. manylinux_2_17_aarch64 (repeat for several)",
    )
    p.add_argument("--python-version", help="target Python, e.g. 3.11 (with --platform)")
    p.add_argument("--find-links", action="append", default=[], type=Path, metavar="DIR")
    p.add_argument("--no-index", action="store_true", help="offline: only --find-links")
    args = p.parse_args(argv)
    out = args.out.resolve()
    try:
        wheels = build_wheelhouse(
            out,
            constraints=args.constraints,
            project=args.project,
            platforms=args.platform,
            python_version=args.python_version,
            find_links=args.find_links,
            no_index=args.no_index,
        )
    except WheelhouseError as e:
        print(f"wheelhouse: {e}", file=sys.stderr)
        return 1
    print(f"{len(wheels)} distributions, {sum(map(len, wheels.values()))} wheels in {out}")
    print(
        f"install: pip install --no-index --find-links {out} --require-hashes -r {out / LOCK_NAME}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
