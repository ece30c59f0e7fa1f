"""Datasets: the registry of named ones, finding and verifying their files, and the formats
digits come in (IDX, CSV, npz). :mod:`digitnet.datasets` gathers the public names."""
