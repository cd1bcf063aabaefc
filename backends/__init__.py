"""The data file formats that ship with icatdump: XML and YAML.

Each module exposes ``reader`` and ``writer`` and is registered through the
``icatdump.backends`` entry-point group (see setup.cfg), exactly as a
third-party format package would be: the built-in formats get no special
treatment, which keeps the plugin path honest.
"""
