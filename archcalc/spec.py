"""Specs to graphs: JSON text, dicts and the Python DSL, all validated by the same rules.

A spec is a name, an input shape (channels-first) and an ordered list of layers. A layer is
an op (``{"type": "conv", "filters": 64, "kernel": 3}``) or an instance of a block defined
under ``"blocks"`` (``{"block": "inception", "name": "inception3a", "args": {...}}``), which
expands here into ops whose names are prefixed by the instance name. Every problem of the spec
is collected and raised together, each located by its JSON path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archcalc.errors import RuleError, SpecError
from archcalc.graph import INPUT, Graph, Node
from archcalc.ops import REGISTRY
from archcalc.ops.base import did_you_mean

_TOP_KEYS = ("name", "description", "input", "blocks", "layers")
_LAYER_KEYS = ("type", "name", "inputs", "scope")
_INSTANCE_KEYS = ("block", "name", "inputs", "args", "repeat", "first")
_BLOCK_KEYS = ("args", "layers", "description")
#: What auto-generated names start with, where the type name would read badly.
NAME_PREFIX = {"maxpool": "pool", "avgpool": "pool", "global_avgpool": "gap", "linear": "fc"}


def _json(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


@dataclass
class _Builder:
    """State of one expansion: nodes so far, names, and the problems found."""

    blocks: Mapping[str, Any]
    nodes: list[Node] = field(default_factory=list)
    names: set[str] = field(default_factory=lambda: {INPUT})
    problems: list[str] = field(default_factory=list)
    counters: dict[tuple[tuple[str, ...], str], int] = field(default_factory=dict)
    #: Names given explicitly anywhere at top level, to tell a later layer from an unknown one.
    all_declared: set[str] = field(default_factory=set)
    #: Locations of the top-level layers when they are not JSON paths (the DSL's file:line).
    wheres: list[str] | None = None

    def fresh_name(self, scope: tuple[str, ...], stem: str) -> str:
        """``conv1``, ``conv2``... per scope, skipping names already taken."""
        while True:
            count = self.counters.get((scope, stem), 0) + 1
            self.counters[(scope, stem)] = count
            name = f"{stem}{count}"
            if ".".join((*scope, name)) not in self.names:
                return name

    def expand(
        self,
        layers: Any,
        path: str,
        scope: tuple[str, ...],
        entry: str,
        outer: str,
        args: Mapping[str, Any],
        depth: int = 0,
    ) -> str:
        """Add the nodes of a layer list; return the name of its last node.

        ``entry`` is what the first layer reads (and what "input" means in a block);
        ``outer`` prefixes locations inside block instances.
        """
        if not isinstance(layers, list) or not layers:
            found = "nothing" if layers is None else _json(layers)
            self.problems.append(f"{outer}{path}: must be a non-empty list of layers, got {found}")
            return entry
        local: dict[str, str] = {INPUT: entry} if scope else {}
        previous = entry
        for index, raw in enumerate(layers):
            where = f"{outer}{path}[{index}]"
            if self.wheres and not scope and index < len(self.wheres):
                where = self.wheres[index]
            if not isinstance(raw, Mapping):
                self.problems.append(f"{where}: a layer must be an object, got {_json(raw)}")
                continue
            if scope:
                before = len(self.problems)
                raw = _substitute(raw, args, where, self.problems)
                if len(self.problems) > before:
                    continue
            if "block" in raw:
                previous = self.instance(raw, where, scope, previous, local, depth)
            else:
                previous = self.op(raw, where, scope, previous, local)
        return previous

    def resolve_inputs(
        self, raw: Mapping[str, Any], where: str, previous: str, local: Mapping[str, str]
    ) -> tuple[str, ...]:
        refs = raw.get("inputs")
        if refs is None:
            return (previous,)
        if isinstance(refs, str):
            refs = [refs]
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            self.problems.append(f"{where}: inputs must be a layer name or a list of them, got {_json(refs)}")
            return (previous,)
        resolved = []
        for ref in refs:
            name = local.get(ref, ref)
            if name not in self.names:
                later = " (a later layer or this one: layers may read only earlier layers)" if ref in self.all_declared else ""
                self.problems.append(
                    f"{where}: input {ref!r} is not an earlier layer{later}"
                    f"{'' if later else did_you_mean(ref, [*local, *self.names])}"
                )
                continue
            resolved.append(name)
        return tuple(resolved) or (previous,)

    def op(
        self, raw: Mapping[str, Any], where: str, scope: tuple[str, ...], previous: str, local: dict[str, str]
    ) -> str:
        op_type = raw.get("type")
        if not isinstance(op_type, str) or op_type not in REGISTRY:
            hint = did_you_mean(op_type, REGISTRY) if isinstance(op_type, str) else ""
            found = "no type" if op_type is None else f"unknown type {_json(op_type)}"
            self.problems.append(f"{where}: {found}{hint or '; one of ' + ', '.join(sorted(REGISTRY))}")
            return previous
        op = REGISTRY[op_type]
        name = raw.get("name")
        if name is None:
            name = self.fresh_name(scope, NAME_PREFIX.get(op_type, op_type))
        elif not _valid_name(name):
            self.problems.append(f'{where}: name must be a non-empty string without spaces, got {_json(name)}')
            return previous
        full = ".".join((*scope, name))
        label = f'{where} (name="{full}", type="{op_type}")'
        attrs = dict(op.defaults())
        declared = {a.name: a for a in op.attrs}
        invalid = set()
        for key, value in raw.items():
            if key in _LAYER_KEYS:
                continue
            if key not in declared:
                hint = did_you_mean(key, declared) or (
                    f"; {op_type} takes {', '.join(declared)}" if declared else f"; {op_type} takes no attributes"
                )
                self.problems.append(f"{label}: unknown attribute {key!r}{hint}")
                continue
            try:
                attrs[key] = declared[key].convert(value)
            except RuleError as error:
                self.problems.append(f"{label}: {key} {error}")
                invalid.add(key)
        for missing in (a.name for a in op.attrs if a.name not in attrs and a.name not in invalid):
            self.problems.append(f"{label}: {missing} is required ({declared[missing].doc})")
        attrs = {a.name: attrs[a.name] for a in op.attrs if a.name in attrs}
        problems_before = len(self.problems)
        inputs = self.resolve_inputs(raw, label, previous, local)
        low, high = op.arity
        references_ok = len(self.problems) == problems_before
        if references_ok and not low <= len(inputs) <= (high or len(inputs)):
            wanted = f"{low}" if low == high else f"at least {low}"
            self.problems.append(f"{label}: takes {wanted} input(s), got {len(inputs)}")
        node_scope = tuple(raw["scope"]) if not scope and _is_scope(raw.get("scope")) else scope
        if full in self.names:
            self.problems.append(f"{label}: name is used twice")
            return previous
        self.nodes.append(Node(full, op_type, attrs, inputs, node_scope, where))
        self.names.add(full)
        local[name] = full
        return full

    def instance(
        self,
        raw: Mapping[str, Any],
        where: str,
        scope: tuple[str, ...],
        previous: str,
        local: dict[str, str],
        depth: int,
    ) -> str:
        block_name = raw["block"]
        for key in raw:
            if key not in _INSTANCE_KEYS:
                self.problems.append(f"{where}: unknown key {key!r} of a block instance{did_you_mean(key, _INSTANCE_KEYS)}")
        if not isinstance(block_name, str) or block_name not in self.blocks:
            hint = did_you_mean(block_name, self.blocks) or '; define it under "blocks"'
            self.problems.append(f"{where}: unknown block {_json(block_name)}{hint}")
            return previous
        if depth > 16:
            self.problems.append(f"{where}: blocks nest deeper than 16 (does block {block_name!r} instantiate itself?)")
            return previous
        name = raw.get("name")
        if name is None:
            name = self.fresh_name(scope, block_name)
        elif not _valid_name(name):
            self.problems.append(f"{where}: name must be a non-empty string without spaces, got {_json(name)}")
            return previous
        repeat = raw.get("repeat", 1)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            self.problems.append(f"{where}: repeat must be a positive int, got {_json(repeat)}")
            return previous
        entry = self.resolve_inputs(raw, where, previous, local)
        if len(entry) != 1:
            self.problems.append(f"{where}: a block instance reads one input, got {len(entry)}")
        out = entry[0]
        for index in range(repeat):
            instance_raw = dict(raw)
            if index == 0 and isinstance(raw.get("first"), Mapping):
                first = raw["first"]
                instance_raw["block"] = first.get("block", raw["block"])
                instance_raw["args"] = {**raw.get("args", {}), **first.get("args", {})}
            instance_scope = (*scope, name, str(index)) if repeat > 1 else (*scope, name)
            out = self.expand_block(instance_raw, where, instance_scope, out, depth)
        local[name] = out
        self.names.add(".".join((*scope, name)))
        return out

    def expand_block(self, raw: Mapping[str, Any], where: str, scope: tuple[str, ...], entry: str, depth: int) -> str:
        block_name = raw["block"]
        block = self.blocks.get(block_name)
        if not isinstance(block, Mapping):
            self.problems.append(f"{where}: unknown block {_json(block_name)}{did_you_mean(block_name, self.blocks)}")
            return entry
        declared = block.get("args", {})
        given = raw.get("args", {})
        if not isinstance(given, Mapping):
            self.problems.append(f"{where}: args must be an object, got {_json(given)}")
            return entry
        args = dict(declared)
        for key, value in given.items():
            if key not in declared:
                self.problems.append(f"{where}: block {block_name!r} has no argument {key!r}{did_you_mean(key, declared)}")
            args[key] = value
        for key, value in args.items():
            if value is None:
                self.problems.append(f"{where}: block {block_name!r} needs argument {key!r}")
        instance = ".".join(scope)
        outer = f'{where} (instance "{instance}" of block "{block_name}") > '
        return self.expand(block.get("layers"), f"blocks.{block_name}.layers", scope, entry, outer, args, depth + 1)


def _valid_name(name: Any) -> bool:
    return isinstance(name, str) and bool(name) and not any(c.isspace() for c in name)


def _is_scope(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _substitute(value: Any, args: Mapping[str, Any], where: str, problems: list[str]) -> Any:
    """Replace every ``"$arg"`` string in a block's layer by the instance's argument."""
    if isinstance(value, str) and value.startswith("$"):
        key = value[1:]
        if key not in args:
            problems.append(f"{where}: {value!r} names no argument of the block{did_you_mean(key, args)}")
            return value
        return args[key]
    if isinstance(value, Mapping):
        return {k: _substitute(v, args, where, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, args, where, problems) for v in value]
    return value


def _declared_names(layers: Any) -> set[str]:
    """Top-level names given explicitly, to tell a later reference from an unknown one."""
    if not isinstance(layers, list):
        return set()
    return {raw["name"] for raw in layers if isinstance(raw, Mapping) and isinstance(raw.get("name"), str)}


def from_dict(spec: Any, source: str = "<dict>", wheres: list[str] | None = None) -> Graph:
    """Validate a spec given as a dict and build its graph.

    ``wheres`` optionally locates each top-level layer (the DSL passes ``file.py:line``).

    Raises:
        SpecError: every problem found, each a line naming its place in the spec.
    """
    prefix = f"spec '{source}': "
    if not isinstance(spec, Mapping):
        raise SpecError(f"{prefix}a spec must be a JSON object, got {type(spec).__name__}")
    problems = [
        f"unknown key {key!r}{did_you_mean(key, _TOP_KEYS) or '; a spec has ' + ', '.join(_TOP_KEYS)}"
        for key in spec
        if key not in _TOP_KEYS
    ]
    name = spec.get("name", "")
    if not isinstance(name, str) or not name:
        problems.append(f"name must be a non-empty string, got {_json(name) if 'name' in spec else 'nothing'}")
    shape = spec.get("input")
    if not (
        isinstance(shape, list)
        and 1 <= len(shape) <= 4
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
    ):
        problems.append(
            "input must be a channels-first shape of positive ints, (C,), (C, L), (C, H, W) or (C, D, H, W), "
            f"got {_json(shape) if 'input' in spec else 'nothing'}"
        )
        shape = None
    if shape is None:
        raise SpecError(*(prefix + p for p in problems))
    blocks = spec.get("blocks", {})
    if not isinstance(blocks, Mapping):
        problems.append(f"blocks must be an object of block definitions, got {_json(blocks)}")
        blocks = {}
    for block_name, block in blocks.items():
        if not isinstance(block, Mapping):
            problems.append(f"blocks.{block_name}: must be an object with args and layers")
            continue
        problems.extend(
            f"blocks.{block_name}: unknown key {key!r}{did_you_mean(key, _BLOCK_KEYS)}" for key in block if key not in _BLOCK_KEYS
        )
        if not isinstance(block.get("args", {}), Mapping):
            problems.append(f"blocks.{block_name}.args: must be an object of argument defaults (null: required)")
    builder = _Builder(blocks, all_declared=_declared_names(spec.get("layers")), wheres=wheres)
    input_node = Node(INPUT, "input", {}, (), (), "input")
    builder.expand(spec.get("layers"), "layers", (), INPUT, "", {})
    problems.extend(builder.problems)
    if problems:
        raise SpecError(*(prefix + p for p in problems))
    return Graph(name, tuple(shape), (input_node, *builder.nodes), spec.get("description", ""), source)


def from_json(text: str, source: str = "<json>") -> Graph:
    """Parse JSON text and build its graph; a JSON syntax error names its line and column."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"spec '{source}': not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    return from_dict(spec, source)
