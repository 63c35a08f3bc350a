"""Message catalogs, one module per language: `MESSAGES: dict[str, str]` with `{name}` params.

Owns: every string the UI shows except data (product names and details come from the catalog).
Never holds logic; `kiosk.ui.i18n` loads and formats these.
"""
