"""lrf.runtime: run an exported bundle with numpy and a runtime backend. Never imports torch.

    from lrf.runtime import Generator
    with Generator.load("bundles/cifar10-onnx-int8") as gen:
        image = gen.generate("cat", seed=0)          # uint8 [H, W, 3]

The bundle format (schema v2, noise and schedule included) is specified in ``runtime/BUNDLE.md``.
"""

from lrf.runtime.backends import (Backend, Session, available_backends, get_backend,
                                  register_backend)
from lrf.runtime.containment import ContainmentError
from lrf.runtime.manifest import (MANIFEST, SCHEMA, SCHEMA_VERSION, Bundle, GraphSpec, TensorSpec,
                                  open_bundle, read_manifest, sha256_file, verify_files)
from lrf.runtime.schema import ManifestError
from lrf.runtime.scheduler import GUIDANCE_RANGE, MAX_STEPS, GenerationCancelled
from lrf.runtime.generator import MODES, Generator

__all__ = ["Backend", "Bundle", "ContainmentError", "GUIDANCE_RANGE", "GenerationCancelled",
           "Generator", "GraphSpec", "MANIFEST", "MAX_STEPS", "MODES", "ManifestError", "SCHEMA",
           "SCHEMA_VERSION", "Session", "TensorSpec", "available_backends", "get_backend",
           "open_bundle", "read_manifest", "register_backend", "sha256_file", "verify_files"]
