"""Model code for LRF: config, core, rectified flow, codec, checkpoints."""
