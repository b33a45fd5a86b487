"""lrf.runtime: run an exported bundle with numpy and a runtime backend. Never imports torch.

    from lrf.runtime import Generator
    with Generator.load("bundles/cifar10-onnx-int8") as gen:
        image = gen.generate("cat", seed=0)          # uint8 [H, W, 3]

The bundle format is specified in ``runtime/BUNDLE.md``; the noise in ``lrf/prng.py``.
"""

from lrf.runtime.backends import (Backend, Session, available_backends, get_backend,
                                  register_backend)
from lrf.runtime.manifest import (MANIFEST, SCHEMA, SCHEMA_VERSION, Bundle, GraphSpec, TensorSpec,
                                open_bundle, read_manifest, sha256_file, verify_files)
from lrf.runtime.generator import MODES, GenerationCancelled, Generator

__all__ = ["Backend", "Bundle", "GenerationCancelled", "Generator", "GraphSpec", "MANIFEST",
           "MODES", "SCHEMA", "SCHEMA_VERSION", "Session", "TensorSpec", "available_backends",
           "get_backend", "open_bundle", "read_manifest", "register_backend", "sha256_file",
           "verify_files"]
