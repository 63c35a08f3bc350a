"""The one test world: shared helpers and fixtures for every test folder (see tests/conftest.py).

Tests import helpers from here, never from another test module; nothing edits sys.path.
"""
