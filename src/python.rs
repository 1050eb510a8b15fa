//! The Python adapter: entries that own a Python callable (feature `python`).
