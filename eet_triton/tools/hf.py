"""The transformers side of the tools: load a checkpoint as its transformers model class, and make
valid random inputs for it (token ids with a padded row, attention mask, images)."""

from __future__ import annotations

import inspect
import os

import torch

from eet_triton.errors import DTypeError, UnsupportedModelError

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def as_torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """"fp16" / "bf16" / "fp32" (or a torch dtype) -> torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise DTypeError(f"dtype must be one of fp16, bf16, fp32 (or the torch dtypes), got {dtype!r}")


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def default_device(device=None) -> torch.device:
    """The given device, else the GPU when there is one, else the CPU (kernels interpreted)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, int):
        return torch.device("cuda", device)
    return torch.device(device)


def hf_model_class(config):
    """The transformers class named first in config.architectures, else AutoModel's pick."""
    import transformers

    for name in getattr(config, "architectures", None) or ():
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    try:
        return transformers.AutoModel._model_mapping[type(config)]
    except KeyError:
        raise UnsupportedModelError(
            f"transformers has no model class for config {type(config).__name__} (architectures="
            f"{getattr(config, 'architectures', None)}); set 'architectures' in config.json to a transformers "
            f"class name such as BertModel") from None


def load_hf(path: str | os.PathLike, dtype: torch.dtype, device, *, attn_implementation: str = "sdpa"):
    """The transformers model of a checkpoint folder, in eval mode, on `device` in `dtype`."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    cls = hf_model_class(config)
    model = cls.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
    return model.to(device).eval()


def _sub(config, name: str):
    return getattr(config, name, None) or config


def _accepts(model, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def _without(ids: torch.Tensor, eos: int | None, vocab: int) -> torch.Tensor:
    """ids with no eos token, so the eos that closes a row is its first (CLIP pools at the first)."""
    return ids if eos is None else ids.masked_fill(ids == eos, (eos + 1) % vocab)


def make_inputs(model, batch: int, seq: int, device, *, seed: int | None = None,
                pad: bool = True) -> dict[str, torch.Tensor]:
    """Random valid inputs for a transformers model, drawn from `seed` (None: torch's global RNG).

    input_ids [batch, seq] int64 (seq capped at the position table), with an eos token closing each
    row when the config names one and, when pad and batch > 1, the last row padded to half its
    length (pad_token_id there, attention_mask [batch, seq] 0); token_type_ids when the model has
    types; decoder_input_ids for encoder-decoders; pixel_values [batch, C, S, S] float32 ~ N(0, 1).
    Float tensors come in float32: cast them to each model's dtype (`cast_inputs`).
    """
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    config = model.config
    text, vision = _sub(config, "text_config"), _sub(config, "vision_config")
    inputs: dict[str, torch.Tensor] = {}
    if _accepts(model, "input_ids") and getattr(text, "vocab_size", None):
        seq = min(seq, getattr(text, "max_position_embeddings", None) or seq)
        vocab = text.vocab_size
        eos = getattr(text, "eos_token_id", None)
        eos = eos if isinstance(eos, int) and 0 <= eos < vocab else None
        ids = _without(torch.randint(0, vocab, (batch, seq), generator=gen), eos, vocab)
        lengths = torch.full((batch,), seq)
        if pad and batch > 1:
            lengths[-1] = max(1, seq // 2)
        if eos is not None:
            ids[torch.arange(batch), lengths - 1] = eos
        keep = torch.arange(seq)[None, :] < lengths[:, None]
        pad_id = getattr(text, "pad_token_id", None)
        ids = ids.masked_fill(~keep, pad_id if isinstance(pad_id, int) and 0 <= pad_id < vocab else 0)
        inputs["input_ids"] = ids
        if _accepts(model, "attention_mask"):
            inputs["attention_mask"] = keep.long()
        types = getattr(text, "type_vocab_size", 0) or 0
        if _accepts(model, "token_type_ids") and types > 0:
            inputs["token_type_ids"] = torch.randint(0, types, (batch, seq), generator=gen) * keep
        if _accepts(model, "decoder_input_ids"):
            inputs["decoder_input_ids"] = _without(torch.randint(0, vocab, (batch, seq), generator=gen), eos, vocab)
    if _accepts(model, "pixel_values") and getattr(vision, "image_size", None):
        size = vision.image_size
        channels = getattr(vision, "num_channels", 3)
        inputs["pixel_values"] = torch.randn(batch, channels, size, size, generator=gen)
    if not inputs:
        raise UnsupportedModelError(f"Cannot make inputs for {type(model).__name__}: its forward takes none of "
                                    f"input_ids, pixel_values. Pass inputs={{...}} yourself.")
    return {k: v.to(device) for k, v in inputs.items()}


def cast_inputs(inputs: dict, dtype: torch.dtype, device=None) -> dict:
    """The floating tensors of `inputs` in `dtype` (and everything on `device` when given)."""
    out = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device if device is not None else value.device,
                             dtype=dtype if value.is_floating_point() else value.dtype)
        out[name] = value
    return out
