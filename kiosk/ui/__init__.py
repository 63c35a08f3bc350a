"""The touchscreen UI (pygame): screens, widgets, theme, fonts, i18n.

The UI loop owns the screen and nothing else: it draws the controller's view state and posts
intents; it never blocks on serial, network or disk. See kiosk/ui/app.py and docs/ui.md.
"""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
