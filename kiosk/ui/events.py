"""The UI's own pygame event types.

Owns: the numbers of custom events. `VIEW_CHANGED` is what the controller's notify callback
posts (from any thread) so the sleeping UI loop wakes and reads the new snapshot.
"""

from __future__ import annotations

import pygame

__all__ = [
    "BACKGROUND_DONE",
    "IMAGES_CHANGED",
    "VIEW_CHANGED",
    "notify_images_changed",
    "notify_view_changed",
]

VIEW_CHANGED: int = pygame.event.custom_type()
BACKGROUND_DONE: int = pygame.event.custom_type()  # no attrs: results wait in UiApp._results
IMAGES_CHANGED: int = pygame.event.custom_type()  # a product picture arrived (sync media)


def notify_view_changed() -> None:
    """The callback to hand the controller: thread-safe, never blocks."""
    if pygame.display.get_init() or pygame.get_init():
        pygame.event.post(pygame.event.Event(VIEW_CHANGED))


def notify_images_changed() -> None:
    """A product picture was stored: redraw so it replaces the placeholder. Thread-safe."""
    if pygame.display.get_init() or pygame.get_init():
        pygame.event.post(pygame.event.Event(IMAGES_CHANGED))
