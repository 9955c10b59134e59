"""Checkpoints and structure maps: find a checkpoint, read it tensor by tensor, and route each
tensor into a model's parameters through a family's YAML map (docs/MAPS.md)."""

from eet_triton.mapping.apply import LoadResult, as_dtype, load_into
from eet_triton.mapping.checkpoint import CheckpointReader, read_config, resolve_checkpoint
from eet_triton.mapping.structure_map import (
    ROLES,
    SPEC_FIELDS,
    TRANSFORMS,
    Part,
    Role,
    Route,
    Rule,
    Source,
    SpecValue,
    StructureMap,
    builtin_maps,
    load_map,
    lookup_config,
    parse_map,
    select_map,
)

__all__ = [
    "ROLES",
    "SPEC_FIELDS",
    "TRANSFORMS",
    "CheckpointReader",
    "LoadResult",
    "Part",
    "Role",
    "Route",
    "Rule",
    "Source",
    "SpecValue",
    "StructureMap",
    "as_dtype",
    "builtin_maps",
    "load_into",
    "load_map",
    "lookup_config",
    "parse_map",
    "read_config",
    "resolve_checkpoint",
    "select_map",
]
