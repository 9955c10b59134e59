"""Triton kernels and their host launchers: torch tensors in, torch tensors out.

No nn.Module and no HuggingFace import lives here.
"""
