"""Find a HuggingFace checkpoint on disk and read its tensors one at a time.

`resolve_checkpoint` turns a local folder or a hub id into a folder, using only the local
HuggingFace cache (never the network). `read_config` reads its config.json. `CheckpointReader`
opens the weights (model.safetensors, a sharded safetensors index, or pytorch_model.bin) and hands
out one tensor per `get`, so host memory peaks near the largest tensor, not the whole model.
Safetensors files are validated when opened (header length, header JSON, every tensor's byte range
against the file size), so a truncated download fails before anything is copied.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import struct
from pathlib import Path

import torch

from eet_triton.errors import CheckpointError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS, SAFETENSORS_INDEX, TORCH_BIN, TORCH_BIN_INDEX)

# safetensors' own reader refuses headers above 100 MB; a larger length means a corrupt file
_MAX_HEADER = 100_000_000

_SAFETENSORS_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "U16": torch.uint16,
    "I32": torch.int32, "U32": torch.uint32, "I64": torch.int64, "U64": torch.uint64,
    "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _hub_cache(cache_dir: str | os.PathLike | None) -> Path:
    """The hub cache folder, reading the environment now (huggingface_hub reads it once at import)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _how_to_get(repo_id: str) -> str:
    return (f"Download it on a machine with network access (`hf download {repo_id}` or "
            f"`huggingface-cli download {repo_id}`) into this cache, set HF_HUB_CACHE / HF_HOME to the cache "
            f"that holds it, or pass the path of a local folder with config.json and the weights.")


def resolve_checkpoint(name_or_path: str | os.PathLike, *, revision: str | None = None,
                       cache_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding a checkpoint's config.json and weights.

    name_or_path: a local folder (it must hold config.json), or a hub id such as
    "sentence-transformers/all-MiniLM-L6-v2", looked up in the local HuggingFace cache only
    (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub; `cache_dir` overrides) at
    `revision` (a branch, tag or commit hash; default "main"). Nothing touches the network.
    Raises CheckpointError saying where it looked and how to get the checkpoint.
    """
    from huggingface_hub import try_to_load_from_cache

    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{path} is a folder but holds no config.json (it has: {_listing(path)}). A checkpoint folder "
                f"holds config.json next to the weights: write one with model.save_pretrained(folder).")
        return path.resolve()
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the folder that holds config.json and the weights.")
    if not _REPO_ID.match(text) or ".." in text or "--" in text:
        raise CheckpointError(f"No folder {path} exists, and {text!r} is not a HuggingFace hub id (org/name). "
                              f"Pass the path of a checkpoint folder that holds config.json.")

    cache = _hub_cache(cache_dir)
    repo_folder = cache / ("models--" + text.replace("/", "--"))
    try:
        found = try_to_load_from_cache(text, "config.json", cache_dir=str(cache), revision=revision)
    except ValueError as exc:  # huggingface_hub's HFValidationError for an id it refuses
        raise CheckpointError(f"{text!r} is not a valid HuggingFace hub id ({exc}). "
                              f"Pass a hub id (org/name) or a local folder.") from exc
    if isinstance(found, str):
        return Path(found).parent
    wanted = revision or "main"
    if not repo_folder.is_dir():
        where = f"no folder {repo_folder.name} in the HuggingFace cache {cache}"
    else:
        snapshots = sorted(p.name for p in (repo_folder / "snapshots").glob("*")) if (
            repo_folder / "snapshots").is_dir() else []
        where = (f"{repo_folder} exists but has no snapshot with config.json for revision {wanted!r} "
                 f"(cached snapshots: {', '.join(snapshots) or 'none'}"
                 f"{'; pass revision=<one of them>' if snapshots else ''})")
    raise CheckpointError(f"Checkpoint {text!r} is not a local folder and is not in the local HuggingFace cache: "
                          f"{where}. eet_triton never downloads. {_how_to_get(text)}")


def read_config(path: str | os.PathLike) -> dict:
    """config.json of a checkpoint folder (or the file itself) as a dict."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"No config.json at {file}. A HuggingFace checkpoint folder holds config.json next to "
                              f"the weights: write one with model.save_pretrained(folder) or config.save_pretrained.")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file} is not valid JSON ({exc}): the file is damaged; download it again.") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} holds a JSON {type(config).__name__}, expected an object of config "
                              f"attributes: the file is damaged; download it again.")
    return config


def _listing(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir())
    return ", ".join(names[:12]) + (f", ... ({len(names) - 12} more)" if len(names) > 12 else "") or "nothing"


class _SafetensorsHeader:
    """The validated header of one safetensors file: key -> (dtype name, shape, begin, end)."""

    def __init__(self, file: Path):
        self.file = file
        size = file.stat().st_size
        with open(file, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                self._fail(f"the file has {size} bytes, too few for the 8-byte header length: it is truncated")
            (length,) = struct.unpack("<Q", head)
            if length > _MAX_HEADER or 8 + length > size:
                self._fail(f"the header length field says {length} bytes but the file has {size}: the file is "
                           f"truncated or not a safetensors file")
            raw = f.read(length)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._fail(f"the header is not valid JSON ({exc})")
        if not isinstance(header, dict):
            self._fail(f"the header is a JSON {type(header).__name__}, expected an object")
        data_size = size - 8 - length
        self.entries: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            try:
                dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
                valid = (isinstance(dtype, str) and all(isinstance(n, int) and n >= 0 for n in shape)
                         and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end)
            except (TypeError, KeyError, ValueError):
                valid = False
            if not valid:
                self._fail(f"the header entry for {key!r} is malformed: {entry!r}")
            if end > data_size:
                self._fail(f"tensor {key!r} ends at data byte {end} but the file holds only {data_size} data bytes: "
                           f"the file is truncated")
            if dtype in _SAFETENSORS_DTYPES:
                need = math.prod(shape) * _SAFETENSORS_DTYPES[dtype].itemsize
                if end - begin != need:
                    self._fail(f"tensor {key!r} ({dtype} {list(shape)}) needs {need} bytes, its data range holds "
                               f"{end - begin}")
            self.entries[key] = (dtype, shape, begin, end)

    def _fail(self, what: str):
        raise CheckpointError(f"{self.file} is not a readable safetensors file: {what}. "
                              f"Download or save the checkpoint again.")


class CheckpointReader:
    """Reads a checkpoint's tensors one at a time.

    path: a checkpoint folder, or one weights file in it. In a folder the reader takes the first of
    model.safetensors, model.safetensors.index.json (shards), pytorch_model.bin,
    pytorch_model.bin.index.json. Safetensors are read through memory-mapped safe_open, .bin files
    through torch.load(weights_only=True, mmap=True): `get` returns one CPU tensor in the stored
    dtype, and nothing else is resident. Use as a context manager (or call close()).
    """

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        if path.is_dir():
            self.folder = path
            found = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
            if not found:
                raise CheckpointError(
                    f"No weights in {path}: looked for {', '.join(WEIGHT_FILES)}; the folder holds {_listing(path)}. "
                    f"Save the model with save_pretrained(folder), or download the weights files too.")
            self.source = found[0]
        elif path.is_file():
            self.folder, self.source = path.parent, path
        else:
            raise CheckpointError(f"No checkpoint at {path}: neither a folder nor a weights file.")
        self._where: dict[str, Path] = {}
        self._headers: dict[Path, _SafetensorsHeader] = {}
        self._handles: dict[Path, object] = {}
        self._state: dict[str, torch.Tensor] = {}
        self._index: dict[str, Path] | None = None
        self._stack = contextlib.ExitStack()
        name = self.source.name
        if name.endswith(".index.json"):
            files = self._read_index()
        else:
            files = [self.source]
        self.format = "safetensors" if files[0].suffix == ".safetensors" else "bin"
        try:
            for file in files:
                if self.format == "safetensors":
                    self._open_safetensors(file)
                else:
                    self._open_bin(file)
        except BaseException:
            self.close()
            raise
        self.files: tuple[Path, ...] = tuple(files)

    def _read_index(self) -> list[Path]:
        try:
            index = json.loads(self.source.read_text(encoding="utf-8"))
            weight_map = index["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not an object")
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{self.source} is not a valid shard index ({type(exc).__name__}: {exc}); expected "
                                  f'{{"weight_map": {{tensor key: shard file}}}}. Download it again.') from exc
        files = list(dict.fromkeys(self.folder / f for f in weight_map.values()))
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{self.source} names shards that are not in {self.folder}: {', '.join(missing)}. "
                                  f"Download the missing shards.")
        self._index = {key: self.folder / f for key, f in weight_map.items()}
        return files

    def _open_safetensors(self, file: Path):
        from safetensors import SafetensorError, safe_open

        header = _SafetensorsHeader(file)
        keys = sorted(header.entries, key=lambda k: header.entries[k][2])
        if self._index is not None:
            keys = [k for k in keys if self._index.get(k) == file]
        try:
            handle = self._stack.enter_context(safe_open(file, framework="pt", device="cpu"))
        except SafetensorError as exc:
            raise CheckpointError(f"{file} is not a readable safetensors file: {exc}. "
                                  f"Download or save the checkpoint again.") from exc
        self._headers[file] = header
        self._handles[file] = handle
        for key in keys:
            self._where[key] = file
        self._check_index_keys(file, header.entries)

    def _open_bin(self, file: Path):
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # torch raises RuntimeError, pickle and zipfile errors alike
            raise CheckpointError(f"{file} could not be read as a torch state dict ({type(exc).__name__}: {exc}). "
                                  f"It must be a torch.save'd state dict in the zip format (torch >= 1.6); re-save "
                                  f"it, or convert it to safetensors.") from exc
        if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
            raise CheckpointError(f"{file} does not hold a state dict of tensors (got {type(state).__name__}). "
                                  f"Save model.state_dict(), or use save_pretrained.")
        if self._index is not None:
            state = {k: t for k, t in state.items() if self._index.get(k) == file}
        self._state.update(state)
        for key in state:
            self._where[key] = file
        self._check_index_keys(file, state)

    def _check_index_keys(self, file: Path, held):
        if self._index is None:
            return
        absent = [k for k, f in self._index.items() if f == file and k not in held]
        if absent:
            raise CheckpointError(f"{self.source} says {file.name} holds {', '.join(absent[:5])}"
                                  f"{' ...' if len(absent) > 5 else ''}, but it does not: the shard does not match "
                                  f"the index. Download the checkpoint again.")

    def describe(self, key: str | None = None) -> str:
        """The file a key lives in (or the checkpoint's entry file), for messages."""
        if key is not None and key in self._where:
            return str(self._where[key])
        return str(self.source)

    def keys(self) -> list[str]:
        """Every tensor key, shard by shard, in storage order."""
        return list(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self._where)

    def _missing(self, key: str):
        raise CheckpointError(f"{self.source} holds no tensor {key!r} ({len(self)} keys, e.g. "
                              f"{', '.join(self.keys()[:3])}).")

    def shape(self, key: str) -> torch.Size:
        """Shape of a stored tensor, from the header: nothing is read."""
        file = self._where.get(key) or self._missing(key)
        if self.format == "safetensors":
            return torch.Size(self._headers[file].entries[key][1])
        return self._state[key].shape

    def dtype(self, key: str) -> torch.dtype | str:
        """Stored dtype (a torch.dtype; the safetensors name for a dtype torch lacks)."""
        file = self._where.get(key) or self._missing(key)
        if self.format == "safetensors":
            name = self._headers[file].entries[key][0]
            return _SAFETENSORS_DTYPES.get(name, name)
        return self._state[key].dtype

    def get(self, key: str) -> torch.Tensor:
        """One tensor on the CPU in its stored dtype (a fresh copy for safetensors, an mmap view for .bin)."""
        file = self._where.get(key) or self._missing(key)
        if self.format == "safetensors":
            return self._handles[file].get_tensor(key)
        return self._state[key]

    def close(self):
        self._stack.close()
        self._handles.clear()
        self._state.clear()

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"CheckpointReader({str(self.source)!r}, {len(self)} tensors in {len(self.files)} file(s))"
