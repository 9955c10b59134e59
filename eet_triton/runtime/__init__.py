"""Runtime pieces around the ops: the KV cache for decoding, the CUDA-graph runner, and running
two independent halves of a forward side by side (runtime.streams)."""

from eet_triton.runtime.cuda_graph import GraphRunner
from eet_triton.runtime.kv_cache import KVCache

__all__ = ["GraphRunner", "KVCache"]
