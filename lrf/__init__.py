"""LRF Mobile: a tiny latent rectified-flow image generator for phones.

The import namespace ``lrf`` maps onto the repository's top-level folders:
``lrf.models`` (models/), ``lrf.training`` (training/), ``lrf.exporter`` (exporter/),
``lrf.runtime`` (runtime/) and ``lrf.benchmarks`` (benchmarks/).
"""

__version__ = "0.1.0"
