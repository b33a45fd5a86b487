"""LRF Mobile: a tiny latent rectified-flow image generator for phones.

The import namespace ``lrf`` maps onto the repository's top-level folders:
``lrf.models`` (models/), ``lrf.training`` (training/), ``lrf.exporter`` (exporter/),
``lrf.runtime`` (runtime/) and ``lrf.benchmarks`` (benchmarks/).
"""

import logging as _logging
import os as _os

__version__ = "0.1.0"

# onnxruntime (1.29+) writes a device id and a telemetry database under ~/.cache on every run
# unless this is set before it starts; every process of ours imports lrf first (issue 25).
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


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


def _exit_at_once_on_signals(prog: str) -> None:
    """SIGINT -> one line ``prog: interrupted`` and exit 130, SIGTERM -> ``prog: terminated``
    and 143, at once (for a console script that has nothing open yet); a signal the parent set
    to be ignored (``nohup``) stays ignored. ``lrf.cli.guard_startup`` installs the same."""
    import os
    import signal

    def handler(status: int, word: str):
        def at_once(*_):
            os.write(2, f"{prog}: {word}\n".encode())
            os._exit(status)  # nothing of ours is open yet: no cleanup to run
        return at_once

    for s, status, word in ((signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143,
                                                                   "terminated")):
        if signal.getsignal(s) is not signal.SIG_IGN:
            signal.signal(s, handler(status, word))


def _quiet_interrupt_while_a_console_script_starts() -> None:
    """Ctrl-C during a console script's imports (torch takes seconds) is one line and exit 130,
    not a traceback, from the first import of ``lrf`` on. Only when this process IS one of our
    console scripts (``sys.argv[0]``), so a program importing ``lrf`` keeps its own signal
    handling; lrf.cli.run takes over in main."""
    import os
    import sys
    import threading

    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if prog in _SCRIPTS and threading.current_thread() is threading.main_thread():
        _exit_at_once_on_signals(prog)


_SCRIPTS = ("lrf-generate", "lrf-train", "lrf-eval", "lrf-export", "lrf-bench")
_quiet_interrupt_while_a_console_script_starts()
