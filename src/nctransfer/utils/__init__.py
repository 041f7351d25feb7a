"""Low-level helpers: validation, atomic I/O, reproducibility. Imports nothing above it."""
