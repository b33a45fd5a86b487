"""The one default model, used wherever a tool or API is given no checkpoint or bundle.

``DEFAULT_MODEL`` names the checkpoint folder ``models/weights/<DEFAULT_MODEL>``: the default of
``lrf-generate`` (PyTorch path), ``lrf-export``, ``lrf-bench``, ``LRFPipeline.from_pretrained()``
and ``load_checkpoint()``. ``DEFAULT_BUNDLE`` names its prebuilt bundle in ``models/bundles/``,
the one ``lrf.runtime.Generator.load()`` and ``lrf-generate --bundle`` open. Switching the
project's default model is a change of this one line (plus shipping that model's weights and
bundle); ``tests/test_defaults.py`` checks that the bundle was exported from the checkpoint.
"""

DEFAULT_MODEL = "cifar10-turbo"
DEFAULT_BUNDLE = f"{DEFAULT_MODEL}-int8"
