"""Rows and pixels: the suite contract, the index of a suite on disk, images and Parquet shards, the tables
users hand over (file lists, score files), label values, preprocessing, perturbations and batch loading.

May import the ground floor only.
"""
