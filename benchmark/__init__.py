"""ialbench: image address localization vs. place recognition + reverse geocoding."""

__version__ = "0.1.0"
