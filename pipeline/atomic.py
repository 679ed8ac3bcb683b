"""Atomic file replacement (defined once, in spartan_formats.atomic): a crash leaves the old file (or none), never a
half-written one."""

from spartan_formats.atomic import atomic_write

__all__ = ["atomic_write"]
