"""treeoflife: build TreeOfLife-style biology image datasets and BioCLIP-style models."""

__version__ = "0.1.0"
