"""LRF Mobile: a tiny latent rectified-flow image generator for phones.

The import namespace ``lrf`` maps onto the repository's top-level folders:
``lrf.models`` (models/), ``lrf.training`` (training/), ``lrf.exporter`` (exporter/),
``lrf.runtime`` (runtime/) and ``lrf.benchmarks`` (benchmarks/).
"""

import logging as _logging

__version__ = "0.1.0"


class _DropThirdPartyNoise(_logging.Filter):
    """Drops only the listed start-up messages of one third-party logger; anything else it logs
    (and everything our own code logs or warns) still gets through."""

    def __init__(self, *needles: str):
        super().__init__()
        self.needles = needles

    def filter(self, record: _logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
            return True
        return not any(n in text for n in self.needles)


# Printed on stderr whenever torch is loaded with diffusers and torchao installed, before any
# output of ours (torchao's optional CUDA kernels, diffusers' torchao serialization hook, and
# torch's pytree deprecation for torchao's enums). Logger filters apply to the records created
# on that very logger, so each filter is scoped to the module that emits the message.
_NOISE = {
    "torchao": ("Failed to load ", "Skipping import of cpp extensions"),
    "diffusers.quantizers.torchao.torchao_quantizer": ("Unable to import `torchao` Tensor objects",),
    "torch.utils._pytree": ("Calling register_constant() on Enum subclasses is deprecated",),
}
for _name, _needles in _NOISE.items():
    _logging.getLogger(_name).addFilter(_DropThirdPartyNoise(*_needles))
del _name, _needles


def _quiet_interrupt_while_a_console_script_starts() -> None:
    """Ctrl-C during a console script's imports (torch takes seconds) is one line and exit 130,
    not a traceback. Only when this process IS one of our console scripts (``sys.argv[0]``), so
    a program importing ``lrf`` keeps its own SIGINT handling; lrf.cli.run takes over in main."""
    import os
    import signal
    import sys
    import threading

    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if prog not in _SCRIPTS or threading.current_thread() is not threading.main_thread():
        return

    def interrupted(*_):
        os.write(2, f"{prog}: interrupted\n".encode())
        os._exit(130)  # nothing of ours is open yet: no cleanup to run

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupted)


_SCRIPTS = ("lrf-generate", "lrf-train", "lrf-eval", "lrf-export", "lrf-bench")
_quiet_interrupt_while_a_console_script_starts()
