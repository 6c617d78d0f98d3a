"""`pantau restore DIR`: the command's entry point (the work is in pantau.backup)."""

from pantau.backup.__main__ import restore_main as main

__all__ = ["main"]
