"""The pseudo-anomaly kinds: the ids the kernels, the policy and the losses use, and the names users write.

A sample's kind travels as an int64 tensor (`PseudoAnomalies.kind`); KIND_NONE marks a normal sample. Presets,
YAML files and model configs name the kinds ("skip", "shuffle", ...); `KIND_BY_NAME` maps those names to ids.
"""

from __future__ import annotations

KIND_NONE, KIND_SKIP, KIND_SHUFFLE, KIND_NOISE, KIND_PATCH, KIND_DDL = 0, 1, 2, 3, 4, 5
KIND_NAMES = {KIND_NONE: "none", KIND_SKIP: "skip", KIND_SHUFFLE: "shuffle", KIND_NOISE: "noise",
              KIND_PATCH: "patch", KIND_DDL: "ddl"}
# The kinds a sample can be turned into, by name (every kind but KIND_NONE), in id order.
KIND_BY_NAME = {name: kind for kind, name in KIND_NAMES.items() if kind != KIND_NONE}
# Kinds that perturb an object's box: a sample without an object (valid=False) stays normal.
OBJECT_KINDS = frozenset({KIND_PATCH, KIND_DDL})

# How often a pseudo-anomaly parameter is drawn: once per sample, or once per batch (the dual-path authors pick one
# source per batch and one frame permutation per batch).
DRAWS = ("sample", "batch")
# Where a skip clip's frames come from: the sample's own frames around its centre, or another clip of the batch
# (the dual-path authors take their skip clips from a second, shuffled loader: another random clip).
SKIP_SOURCES = ("same", "other")
