"""Data loaders and simulators (installed as ``invdiff.datasets``)."""
