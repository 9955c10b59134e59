"""EET's op API: thin nn.Modules over the Triton kernels that own their weights, know pre/post-LN
and bias flags, and lift HuggingFace submodules with `from_torch(hf_module)`.

    from eet_triton.ops import EETSelfAttention
    op = EETSelfAttention.from_torch(hf_bert_layer.attention, dtype=torch.float16, device="cuda")
    y = op(x, attention_mask=mask)          # == hf_bert_layer.attention(x, mask4d)[0]

`from_torch(module, causal=None)` here picks the op class for any supported HF module.
"""

from __future__ import annotations

import torch
from torch import nn

from eet_triton.errors import UnsupportedModelError
from eet_triton.ops import attention as _attention
from eet_triton.ops import embedding as _embedding
from eet_triton.ops import feedforward as _feedforward
from eet_triton.ops.attention import EETCrossAttention, EETSelfAttention, EETSelfMaskedAttention
from eet_triton.ops.embedding import EETBertEmbedding, EETVisionEmbedding
from eet_triton.ops.feedforward import EETFeedforward
from eet_triton.ops.layernorm import EETLayerNorm

__all__ = [
    "EETBertEmbedding",
    "EETCrossAttention",
    "EETFeedforward",
    "EETLayerNorm",
    "EETSelfAttention",
    "EETSelfMaskedAttention",
    "EETVisionEmbedding",
    "from_torch",
]



def from_torch(module, dtype: torch.dtype | None = None, device=None, *, causal: bool | None = None) -> nn.Module:
    """The op for any supported HF module (or (BertIntermediate, BertOutput) pair), weights copied.

    Self attention comes back as EETSelfAttention, or EETSelfMaskedAttention when the module is
    causal (or causal=True, e.g. for CLIP text); T5LayerCrossAttention and modules marked as cross
    attention (BertAttention(is_cross_attention=True), GPT2Attention(is_cross_attention=True)) as
    EETCrossAttention. A bare BartAttention / T5Attention does not say whether it is a cross
    attention and is lifted as self attention: lift a cross one with EETCrossAttention.from_torch.
    """
    if isinstance(module, (tuple, list)):
        return EETFeedforward.from_torch(module, dtype, device)
    names = {c.__name__ for c in type(module).__mro__}
    if names & _attention.HF_CLASSES:
        if _attention.hf_parts(module, "from_torch").cross:
            return EETCrossAttention.from_torch(module, dtype, device)
        return EETSelfAttention.from_torch(module, dtype, device, causal=causal)
    for op, hf_classes in ((EETFeedforward, _feedforward.HF_CLASSES), (EETBertEmbedding, _embedding.TEXT_CLASSES),
                           (EETVisionEmbedding, _embedding.VISION_CLASSES)):
        if names & hf_classes:
            return op.from_torch(module, dtype, device)
    try:
        return EETLayerNorm.from_torch(module, dtype, device)
    except UnsupportedModelError:
        supported = sorted(_attention.HF_CLASSES | _feedforward.HF_CLASSES | _embedding.TEXT_CLASSES
                           | _embedding.VISION_CLASSES | {"nn.LayerNorm", "nn.RMSNorm", "T5LayerNorm"})
        raise UnsupportedModelError(f"from_torch: no op lifts a {type(module).__name__}; supported: "
                                    f"{', '.join(supported)}") from None
