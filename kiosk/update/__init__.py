"""Software updates: releases (a signed manifest over the kiosk wheel and a hash-pinned
wheelhouse), installing one into a new venv, switching to it when the kiosk is idle, and the
supervisor that commits a new version only once it is healthy and rolls back otherwise.

Modules: `wheelhouse` (the wheelhouse and its lock; standard library and pip only, also run by
scripts/wheelhouse.py), `release` (build, sign, verify), `supervisor` (the update state file and
the supervisor; standard library only, never imports the kiosk: it must keep working when the
new version's code is broken), `installer` (the kiosk's side of an update: verify, install,
check, stage), `gate` (the running kiosk switches when idle), `cli_update` (the commands).
See docs/deploy.md ("Releases and updates").
"""
