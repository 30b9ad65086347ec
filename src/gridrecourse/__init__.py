"""gridrecourse: decisions under uncertainty on three-phase unbalanced distribution feeders."""

__version__ = "0.1.0"
