"""torch's intra-op thread count, set from the config.

A module of its own so that the fit, the score pass and the final model set it without
importing the towers' code (``models/encoders/base.py`` pulls in torchvision, 2.3 s).
"""

from __future__ import annotations

import torch


def set_torch_threads(threads: int) -> None:
    """torch's intra-op thread count from the config (``encoder.threads``; 0 keeps torch's
    default for the machine, and a local runner's worker processes get their share of the
    cores: pipeline/options.py ``worker_threads``)."""
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
