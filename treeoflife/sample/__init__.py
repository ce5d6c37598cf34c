"""The bundled sample world: a small, fully synthetic stand-in for iNat21, BIOSCAN-1M and EOL."""

from treeoflife.sample.generate import SAMPLE_VERSION, build_world, generate_sample

__all__ = ["SAMPLE_VERSION", "build_world", "generate_sample"]
