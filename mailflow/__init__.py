"""mailflow: Code of Conduct reports by email."""

__version__ = "0.1.0"
