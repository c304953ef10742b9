"""Networks and their numbers: backbone specs and adapters (open_clip, timm), weight files (offline lookup,
sha256 pins, safe loading), numeric precision, and the content-addressed cache of frozen features.

May import the ground floor and :mod:`detbench.data`.
"""
