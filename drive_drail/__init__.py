"""drive-drail: driving logs -> expert pairs -> DRAIL training -> closed-loop evaluation -> deploy."""

__version__ = "0.1.0"
