"""Edge software for poverty-alleviation smart vending kiosks."""

__version__ = "0.1.0"
