"""The offline bundle: every binary and image a lab needs, built from source, and its manifest.

build.py is `labctl bundle build` (docs/bundle.md); manifest.py reads a bundle's manifest.json --
the one reader, for the model's checks, the images list and the inventory's `lab_bundle` -- and holds
the format both sides share, so the writer and the reader of one file sit in one package.
"""
