"""trace-control: Trace (rich-feedback optimization of code and constants) for robot control."""

__version__ = "0.1.0"
