"""Embedding ops: EETBertEmbedding (token + position (+ type), optional LayerNorm) and
EETVisionEmbedding (patches + class token + positions)."""

from __future__ import annotations

import torch
from torch import nn

from eet_triton.errors import DeviceError, DTypeError, SequenceTooLongError, ShapeError
from eet_triton.kernels._common import FLOAT_DTYPES, check_same_device, check_same_dtype
from eet_triton.kernels.embedding import ID_DTYPES, embedding, patch_embedding
from eet_triton.ops._base import EETOp, as_param, copy_of, empty, module_placement, unsupported
from eet_triton.ops.layernorm import EETLayerNorm

TEXT_CLASSES = frozenset({"BertEmbeddings", "RobertaEmbeddings", "CLIPTextEmbeddings"})
VISION_CLASSES = frozenset({"CLIPVisionEmbeddings", "ViTEmbeddings"})


class EETBertEmbedding(EETOp):
    """h = LN(scale * word[input_ids] + position[position_ids] + type[token_type_ids]) in one kernel.

    forward(input_ids [B, L] int32/int64, token_type_ids=None [B, L], position_ids=None [B, L] or [L])
    -> [B, L, E] in the weights' dtype. Default positions: 0..L-1 (BERT, CLIP text), or with
    `position_padding_idx` set, RoBERTa's padding_idx + cumsum of the non-padding mask (padding
    tokens keep position padding_idx), computed on the device. No token types given with a type
    table means type 0. L beyond the position table raises SequenceTooLongError (a shape check,
    no sync). Ids are not range-checked (that would need a sync), as in torch on CUDA.

    Parameters (the checkpoint-mapping contract): word_weight [V, E], position_weight [P, E] or None,
    type_weight [T, E] or None, norm (EETLayerNorm child or None).

    Construction:
      - `EETBertEmbedding(word_weight, position_weight=None, type_weight=None, norm=None, *, scale=1.0,
        position_padding_idx=None)` takes the tensors as they are (no copy);
      - `EETBertEmbedding.empty(vocab_size, hidden_size, max_positions, type_vocab_size=0, *, norm=None,
        scale=1.0, position_padding_idx=None, dtype, device)`;
      - `EETBertEmbedding.from_torch(module, dtype=None, device=None)` for BertEmbeddings,
        RobertaEmbeddings and CLIPTextEmbeddings.
    """

    def __init__(self, word_weight: torch.Tensor, position_weight: torch.Tensor | None = None,
                 type_weight: torch.Tensor | None = None, norm: EETLayerNorm | None = None, *, scale: float = 1.0,
                 position_padding_idx: int | None = None):
        super().__init__()
        if word_weight.dim() != 2:
            raise ShapeError(f"EETBertEmbedding: word_weight must be [vocab, hidden], got {list(word_weight.shape)}")
        hidden = word_weight.shape[1]
        for name, t in (("position_weight", position_weight), ("type_weight", type_weight)):
            if t is not None and (t.dim() != 2 or t.shape[1] != hidden):
                raise ShapeError(f"EETBertEmbedding: {name} must be [rows, {hidden}], got {list(t.shape)}")
        if norm is not None and norm.hidden_size != hidden:
            raise ShapeError(f"EETBertEmbedding: norm has size {norm.hidden_size}, the hidden size is {hidden}")
        if position_padding_idx is not None and position_weight is None:
            raise ValueError("EETBertEmbedding: position_padding_idx needs a position_weight")
        check_same_dtype(word_weight=word_weight, position_weight=position_weight, type_weight=type_weight)
        check_same_device(word_weight=word_weight, position_weight=position_weight, type_weight=type_weight)
        self.hidden_size = hidden
        self.word_weight = as_param(word_weight)
        self.position_weight = as_param(position_weight)
        self.type_weight = as_param(type_weight)
        self.norm = norm
        self.scale = float(scale)
        self.position_padding_idx = position_padding_idx
        # arange positions as a buffer, so forward slices instead of allocating
        positions = torch.arange(position_weight.shape[0] if position_weight is not None else 0,
                                 device=word_weight.device)
        self.register_buffer("_arange", positions, persistent=False)

    @property
    def max_positions(self) -> int | None:
        """Longest sequence the position table covers (None: no position table)."""
        if self.position_weight is None:
            return None
        offset = self.position_padding_idx + 1 if self.position_padding_idx is not None else 0
        return self.position_weight.shape[0] - offset

    @classmethod
    def empty(cls, vocab_size: int, hidden_size: int, max_positions: int | None, type_vocab_size: int = 0, *,
              norm: EETLayerNorm | None = None, scale: float = 1.0, position_padding_idx: int | None = None,
              dtype: torch.dtype = torch.float16, device="cuda") -> EETBertEmbedding:
        alloc = dict(dtype=dtype, device=device)
        return cls(empty(vocab_size, hidden_size, **alloc),
                   empty(max_positions, hidden_size, **alloc) if max_positions else None,
                   empty(type_vocab_size, hidden_size, **alloc) if type_vocab_size else None,
                   norm, scale=scale, position_padding_idx=position_padding_idx)

    @classmethod
    def from_torch(cls, module: nn.Module, dtype: torch.dtype | None = None, device=None) -> EETBertEmbedding:
        dtype, device = module_placement(module, dtype, device)
        names = {c.__name__ for c in type(module).__mro__}

        def c(t):
            return copy_of(t, dtype, device)

        if names & {"BertEmbeddings", "RobertaEmbeddings"}:
            if getattr(module, "position_embedding_type", "absolute") != "absolute":
                raise unsupported("EETBertEmbedding", module, "absolute position embeddings only")
            padding_idx = module.padding_idx if "RobertaEmbeddings" in names else None
            norm = EETLayerNorm.from_torch(module.LayerNorm, dtype, device)
            return cls(c(module.word_embeddings.weight), c(module.position_embeddings.weight),
                       c(module.token_type_embeddings.weight), norm, position_padding_idx=padding_idx)
        if "CLIPTextEmbeddings" in names:
            return cls(c(module.token_embedding.weight), c(module.position_embedding.weight))
        raise unsupported("EETBertEmbedding", module, ", ".join(sorted(TEXT_CLASSES)))

    def _positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.position_padding_idx is None:
            return self._arange[: input_ids.shape[1]]
        not_pad = input_ids.ne(self.position_padding_idx).to(torch.int32)
        return torch.cumsum(not_pad, dim=1, dtype=torch.int32) * not_pad + self.position_padding_idx

    def _check_ids(self, name: str, ids: torch.Tensor | None, *shapes: tuple[int, ...]) -> None:
        """ids: None or an int32/int64 tensor of one of `shapes`, on the weights' device."""
        if ids is None:
            return
        if not isinstance(ids, torch.Tensor) or ids.dtype not in ID_DTYPES:
            got = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise DTypeError(f"EETBertEmbedding: {name} must be an int32/int64 tensor, got {got}")
        if tuple(ids.shape) not in shapes:
            raise ShapeError(f"EETBertEmbedding: {name} must be {' or '.join(str(list(s)) for s in shapes)}, "
                             f"got {list(ids.shape)}")
        if ids.device != self.device:
            raise DeviceError(f"EETBertEmbedding: {name} is on {ids.device}, the weights on {self.device}; "
                              f"move it with .to('{self.device}')")

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            got = list(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise ShapeError(f"EETBertEmbedding: input_ids must be a [batch, seq_len] tensor, got {got}")
        batch, length = input_ids.shape
        self._check_ids("input_ids", input_ids, (batch, length))
        self._check_ids("token_type_ids", token_type_ids, (batch, length))
        self._check_ids("position_ids", position_ids, (batch, length), (length,))
        if token_type_ids is not None and self.type_weight is None:
            raise ValueError("EETBertEmbedding: token_type_ids given, but this embedding has no type table")
        if position_ids is not None and self.position_weight is None:
            raise ValueError("EETBertEmbedding: position_ids given, but this embedding has no position table")
        if self.position_weight is not None and position_ids is None:
            if length > self.max_positions:
                raise SequenceTooLongError(f"EETBertEmbedding: sequence length {length} exceeds the "
                                           f"{self.max_positions} positions of the table; truncate the input")
            position_ids = self._positions(input_ids)
        norm = self.norm
        return embedding(input_ids, self.word_weight, position_ids=position_ids, position_weight=self.position_weight,
                         token_type_ids=token_type_ids, type_weight=self.type_weight, scale=self.scale,
                         norm_weight=norm.weight if norm is not None else None,
                         norm_bias=norm.bias if norm is not None else None,
                         eps=norm.eps if norm is not None else 1e-12)

    def extra_repr(self) -> str:
        return (f"vocab={self.word_weight.shape[0]}, hidden={self.hidden_size}, max_positions={self.max_positions}, "
                f"types={0 if self.type_weight is None else self.type_weight.shape[0]}, scale={self.scale}, "
                f"position_padding_idx={self.position_padding_idx}")


class EETVisionEmbedding(EETOp):
    """Patch embedding of CLIP / ViT: a stride-P Conv2d as one GEMM, class token prepended,
    positions added, in one kernel.

    forward(pixel_values [B, C, image, image], any float dtype, cast on load as HF casts)
    -> [B, 1 + nP, E] in the weights' dtype, nP = (image / P)^2. Another image size raises ShapeError.

    Parameters (the checkpoint-mapping contract): patch_weight [E, C, P, P], patch_bias [E] or None,
    class_embedding [E], position_weight [1 + nP, E].

    Construction:
      - `EETVisionEmbedding(patch_weight, patch_bias, class_embedding, position_weight, *, image_size)`
        takes the tensors as they are (no copy); image_size is an int or (height, width);
      - `EETVisionEmbedding.empty(image_size, patch_size, num_channels, hidden_size, *, patch_bias=False,
        dtype, device)`;
      - `EETVisionEmbedding.from_torch(module, dtype=None, device=None)` for CLIPVisionEmbeddings and
        ViTEmbeddings (without mask token use).
    """

    def __init__(self, patch_weight: torch.Tensor, patch_bias: torch.Tensor | None, class_embedding: torch.Tensor,
                 position_weight: torch.Tensor, *, image_size: int | tuple[int, int]):
        super().__init__()
        if patch_weight.dim() != 4 or patch_weight.shape[2] != patch_weight.shape[3]:
            raise ShapeError(f"EETVisionEmbedding: patch_weight must be [E, C, P, P], got {list(patch_weight.shape)}")
        hidden, channels, patch = patch_weight.shape[:3]
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if height % patch or width % patch:
            raise ShapeError(f"EETVisionEmbedding: image size {height}x{width} is not a multiple of the patch {patch}")
        tokens = 1 + (height // patch) * (width // patch)
        for name, t, shape in (("patch_bias", patch_bias, (hidden,)), ("class_embedding", class_embedding, (hidden,)),
                               ("position_weight", position_weight, (tokens, hidden))):
            if t is not None and tuple(t.shape) != shape:
                raise ShapeError(f"EETVisionEmbedding: {name} must be {list(shape)}, got {list(t.shape)}")
        check_same_dtype(patch_weight=patch_weight, patch_bias=patch_bias, class_embedding=class_embedding,
                         position_weight=position_weight)
        check_same_device(patch_weight=patch_weight, patch_bias=patch_bias, class_embedding=class_embedding,
                          position_weight=position_weight)
        self.hidden_size, self.num_channels, self.patch_size = hidden, channels, patch
        self.image_size = (height, width)
        self.patch_weight, self.patch_bias = as_param(patch_weight), as_param(patch_bias)
        self.class_embedding, self.position_weight = as_param(class_embedding), as_param(position_weight)

    @classmethod
    def empty(cls, image_size: int | tuple[int, int], patch_size: int, num_channels: int, hidden_size: int, *,
              patch_bias: bool = False, dtype: torch.dtype = torch.float16, device="cuda") -> EETVisionEmbedding:
        height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        alloc = dict(dtype=dtype, device=device)
        tokens = 1 + (height // patch_size) * (width // patch_size)
        return cls(empty(hidden_size, num_channels, patch_size, patch_size, **alloc),
                   empty(hidden_size, **alloc) if patch_bias else None, empty(hidden_size, **alloc),
                   empty(tokens, hidden_size, **alloc), image_size=(height, width))

    @classmethod
    def from_torch(cls, module: nn.Module, dtype: torch.dtype | None = None, device=None) -> EETVisionEmbedding:
        dtype, device = module_placement(module, dtype, device)
        names = {c.__name__ for c in type(module).__mro__}

        def c(t):
            return copy_of(t, dtype, device)

        if "CLIPVisionEmbeddings" in names:
            conv = module.patch_embedding
            return cls(c(conv.weight), c(conv.bias), c(module.class_embedding), c(module.position_embedding.weight),
                       image_size=module.image_size)
        if "ViTEmbeddings" in names:
            conv = module.patch_embeddings.projection
            return cls(c(conv.weight), c(conv.bias), c(module.cls_token.reshape(-1)),
                       c(module.position_embeddings.reshape(module.position_embeddings.shape[-2:])),
                       image_size=tuple(module.patch_embeddings.image_size))
        raise unsupported("EETVisionEmbedding", module, ", ".join(sorted(VISION_CLASSES)))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"EETVisionEmbedding: pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
        want = [self.num_channels, *self.image_size]
        if pixel_values.dim() != 4 or list(pixel_values.shape[1:]) != want:
            raise ShapeError(f"EETVisionEmbedding: pixel_values must be [batch, {want[0]}, {want[1]}, {want[2]}] "
                             f"(the model's channels and image size), got {list(pixel_values.shape)}; "
                             "resize the image with the model's image processor")
        if pixel_values.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"EETVisionEmbedding: pixel_values must be float (fp16, bf16, fp32), got "
                             f"{pixel_values.dtype}")
        if pixel_values.device != self.device:
            raise DeviceError(f"EETVisionEmbedding: pixel_values is on {pixel_values.device}, the weights on "
                              f"{self.device}; move it with .to('{self.device}')")
        return patch_embedding(pixel_values, self.patch_weight, self.patch_bias, class_embedding=self.class_embedding,
                               position_weight=self.position_weight)

    def extra_repr(self) -> str:
        return (f"image={self.image_size}, patch={self.patch_size}, channels={self.num_channels}, "
                f"hidden={self.hidden_size}")
