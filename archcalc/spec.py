"""Specs to graphs: JSON text, dicts and the Python DSL, all validated by the same rules.

A spec is a name, an input shape (channels-first) and an ordered list of layers. A layer is
an op (``{"type": "conv", "filters": 64, "kernel": 3}``) or an instance of a block defined
under ``"blocks"`` (``{"block": "inception", "name": "inception3a", "args": {...}}``), which
expands here into ops whose names are prefixed by the instance name. Every problem of the spec
is collected and raised together (the first ``MAX_PROBLEMS`` of them), each located by its
JSON path.

Every spec is bounded before any work grows with it: ints by ``attrs.MAX_INT``, nesting by
``MAX_NESTING``, names by ``MAX_NAME_LENGTH``, and the layer count that blocks expand to by
``max_layers`` (default ``MAX_LAYERS``), computed from the block structure before expanding.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from archcalc.errors import RuleError, SpecError
from archcalc.graph import INPUT, Graph, Node, Reference
from archcalc.ops import REGISTRY
from archcalc.ops.attrs import MAX_INT, describe
from archcalc.ops.base import did_you_mean

_TOP_KEYS = ("name", "description", "reference", "input", "blocks", "layers")
_REFERENCE_KEYS = ("top1", "source")
_LAYER_KEYS = ("type", "name", "inputs", "scope")
_INSTANCE_KEYS = ("block", "name", "inputs", "args", "repeat", "first", "last", "at")
_BLOCK_KEYS = ("args", "layers", "description")
_OVERRIDE_KEYS = ("block", "args")
#: What auto-generated names start with, where the type name would read badly.
NAME_PREFIX = {"maxpool": "pool", "avgpool": "pool", "global_avgpool": "gap", "linear": "fc"}
#: Layers a spec may expand to unless the caller raises it (``load(..., max_layers=N)``,
#: ``archcalc --max-layers N``): a million-layer chain loads; a 400-byte spec cannot ask for 10**9.
MAX_LAYERS = 1_000_000
#: Problems reported in full; the rest are counted in one last line.
MAX_PROBLEMS = 50
#: Longest layer, block, instance or model name; a full name joins several with dots
#: (``stage1.0.conv1``), each part at most this long, the whole at most MAX_FULL_NAME_LENGTH.
MAX_NAME_LENGTH = 128
MAX_FULL_NAME_LENGTH = 4096
#: Longest description, in characters.
MAX_DESCRIPTION_LENGTH = 2000
#: Deepest nesting of lists and objects in a spec (real specs nest about 7 deep).
MAX_NESTING = 32
#: Deepest nesting of block instances (a block in a block...; GoogLeNet and ResNet use 1).
MAX_BLOCK_DEPTH = 32


def _json(value: Any) -> str:
    return describe(value)


class _Problems(list):
    """The problems found, keeping the first ``MAX_PROBLEMS`` and counting the rest.

    ``len`` counts all of them, so "did this step add a problem" still works past the cap.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def append(self, problem: str) -> None:
        if super().__len__() < MAX_PROBLEMS:
            super().append(problem)
        else:
            self.dropped += 1

    def extend(self, problems: Any) -> None:
        for problem in problems:
            self.append(problem)

    def __len__(self) -> int:
        return super().__len__() + self.dropped

    @property
    def full(self) -> bool:
        """True once further problems are only counted (skip costly hints for them)."""
        return super().__len__() >= MAX_PROBLEMS

    def error(self, prefix: str) -> SpecError:
        """A SpecError listing each kept problem after ``prefix``, counting the dropped ones."""
        return SpecError(*(prefix + p for p in self), omitted=self.dropped)


def quote(text: Any) -> str:
    """``'net.json'`` for a source or path in a message; escaped when it holds control characters."""
    text = str(text)
    return f"'{text}'" if text.isprintable() else repr(text)


def name_problem(value: Any, what: str = "name", spaces: bool = False) -> str | None:
    """Why ``value`` cannot be a name (None if it can): a non-empty single-line string of at
    most ``MAX_NAME_LENGTH`` printable characters, without spaces unless ``spaces``.

    Control characters (terminal escape sequences start with one), format characters
    (bidirectional overrides), lone surrogates and unassigned code points are refused: a name
    is printed in tables, written into DOT files and shown on terminals.
    """
    if not isinstance(value, str) or not value:
        return f"{what} must be a non-empty string, got {_json(value)}"
    longest = max(len(part) for part in value.split("."))
    if longest > MAX_NAME_LENGTH or len(value) > MAX_FULL_NAME_LENGTH:
        return (f"{what} must be at most {MAX_NAME_LENGTH} characters (per dot-separated part; "
                f"{MAX_FULL_NAME_LENGTH} in all), got {max(longest, len(value))}: {_json(value)}")
    return _text_problem(value, what, spaces)


def _text_problem(value: str, what: str, spaces: bool) -> str | None:
    for position, char in enumerate(value):
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs", "Cn") or (char.isspace() and (not spaces or char != " ")):
            kind = {"Cc": "a control character", "Cf": "a format character", "Cs": "a lone surrogate",
                    "Cn": "an unassigned code point"}.get(category, "a space" if char == " " else "white space")
            allowed = "printable characters" if spaces else "printable characters without spaces"
            return (f"{what} must be {allowed}, got {_json(value)} "
                    f"(U+{ord(char):04X} at position {position} is {kind})")
    return None


def auto_name(counters: dict[tuple[tuple[str, ...], str], int], taken: Any, scope: tuple[str, ...], stem: str) -> str:
    """The next free automatic name: ``conv1``, ``conv2``... per scope and stem.

    Names already in ``taken`` (full, dotted names) are skipped, so an explicit ``conv1``
    before an unnamed conv makes it ``conv2``. The JSON builder and the DSL both name with this.
    """
    while True:
        count = counters.get((scope, stem), 0) + 1
        counters[(scope, stem)] = count
        name = f"{stem}{count}"
        if ".".join((*scope, name)) not in taken:
            return name


def stem_of(op_type: str) -> str:
    """What automatic names of an op type start with: ``fc`` for linear, ``pool`` for max-pool."""
    return NAME_PREFIX.get(op_type, op_type)


def channels_last_warning(shape: tuple[int, ...]) -> str | None:
    """A warning when an input shape looks channels-last, e.g. ``[32, 32, 3]``; else None.

    It warns when the last axis is 1 to 4 (grey, RGB, RGBA), every other axis is at least 8
    and the first is larger than the last: an image written (H, W, C) or a volume (D, H, W, C).
    Channels-first specs (``[3, 32, 32]``, ``[64, 56, 56]``) never match: their last axis is
    spatial.
    """
    if len(shape) not in (3, 4) or not 1 <= shape[-1] <= 4 or min(shape[:-1]) < 8:
        return None
    guess = [shape[-1], *shape[:-1]]
    spatial = "x".join(map(str, shape[1:]))
    return (f"input {list(shape)} looks channels-last; archcalc reads shapes channels-first, as {shape[0]} channels "
            f"of {spatial}; if the input has {shape[-1]} channel(s), write \"input\": {guess}")


@dataclass
class _Builder:
    """State of one expansion: nodes so far, names, and the problems found."""

    blocks: Mapping[str, Any]
    nodes: list[Node] = field(default_factory=list)
    names: set[str] = field(default_factory=lambda: {INPUT})
    problems: _Problems = field(default_factory=_Problems)
    counters: dict[tuple[tuple[str, ...], str], int] = field(default_factory=dict)
    #: Names given explicitly anywhere at top level, to tell a later layer from an unknown one.
    all_declared: set[str] = field(default_factory=set)
    #: Locations of the top-level layers when they are not JSON paths (the DSL's file:line).
    wheres: list[str] | None = None
    #: Blocks whose names were refused (already reported): their instances say nothing more.
    rejected: set[str] = field(default_factory=set)
    #: Which containers of the spec hold "$arg" strings (see _has_refs).
    refs: dict[int, bool] = field(default_factory=dict)

    def fresh_name(self, scope: tuple[str, ...], stem: str) -> str:
        """``conv1``, ``conv2``... per scope, skipping names already taken."""
        return auto_name(self.counters, self.names, scope, stem)

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
                raw = _substitute(raw, args, where, self.problems, self.refs)
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
                # a hint searches names: only for problems still shown, and among few names
                hint = ""
                if not later and not self.problems.full:
                    nested = [n for n in self.names if n.endswith("." + ref)] if len(self.names) < 10_000 else []
                    hint = (f"; did you mean {_json(nested[-1])}? (a block's layers carry its name as a prefix)" if nested
                            else _hint(ref, [*local, *self.names] if len(self.names) < 10_000 else list(local)))
                self.problems.append(f"{where}: input {_json(ref)} is not an earlier layer{later}{hint}")
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
            name = self.fresh_name(scope, stem_of(op_type))
        elif self.bad_name(name, where):
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
                hint = _hint(key, declared) or (
                    f"; {op_type} takes {', '.join(declared)}" if declared else f"; {op_type} takes no attributes"
                )
                self.problems.append(f"{label}: unknown attribute {_json(key)}{hint}")
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
            wanted = f"{low}" if low == high else f"at least {low}" if high is None else f"{low} to {high}"
            self.problems.append(f"{label}: takes {wanted} input(s), got {len(inputs)}")
        node_scope = scope
        if not scope and "scope" in raw:
            if _is_scope(raw["scope"]):
                node_scope = tuple(raw["scope"])
            else:
                self.problems.append(f"{label}: scope must be a list of names (the blocks it came from), got {_json(raw['scope'])}")
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
                self.problems.append(f"{where}: unknown key {_json(key)} of a block instance{_hint(key, _INSTANCE_KEYS)}")
        if isinstance(block_name, str) and block_name in self.rejected:
            return previous
        if not isinstance(block_name, str) or block_name not in self.blocks:
            hint = _hint(block_name, self.blocks) or '; define it under "blocks"'
            self.problems.append(f"{where}: unknown block {_json(block_name)}{hint}")
            return previous
        if depth >= MAX_BLOCK_DEPTH:  # the count refuses this first; a second guard against recursion
            self.problems.append(f"{where}: blocks nest more than {MAX_BLOCK_DEPTH} deep")
            return previous
        name = raw.get("name")
        if name is None:
            name = self.fresh_name(scope, block_name)
        elif self.bad_name(name, where):
            return previous
        if ".".join((*scope, name)) in self.names:
            self.problems.append(f"{where}: name {'.'.join((*scope, name))!r} is used twice (a layer or another block instance)")
            return previous
        repeat = raw.get("repeat", 1)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= MAX_INT:
            self.problems.append(f"{where}: repeat must be a positive int, got {_json(repeat)}")
            return previous
        given = raw.get("args", {})
        if not isinstance(given, Mapping):
            self.problems.append(f"{where}: args must be an object of argument values, got {_json(given)}")
            return previous
        overrides = _overrides(raw, repeat, self.blocks)
        if isinstance(overrides, str):
            self.problems.append(f"{where}: {overrides}")
            return previous
        entry = self.resolve_inputs(raw, where, previous, local)
        if len(entry) != 1:
            self.problems.append(f"{where}: a block instance reads one input, got {len(entry)}")
        out = entry[0]
        for index in range(repeat):
            instance_raw, instance_where = dict(raw), where
            if index in overrides:
                override, what = overrides[index]
                instance_raw["block"] = override.get("block", block_name)
                instance_raw["args"] = {**_inherited(given, block_name, instance_raw["block"], self.blocks),
                                        **override.get("args", {})}
                instance_where = f"{where}.{what}"
            instance_scope = (*scope, name, str(index)) if repeat > 1 else (*scope, name)
            out = self.expand_block(instance_raw, instance_where, instance_scope, out, depth)
        local[name] = out
        self.names.add(".".join((*scope, name)))
        return out

    def expand_block(self, raw: Mapping[str, Any], where: str, scope: tuple[str, ...], entry: str, depth: int) -> str:
        block_name = raw["block"]
        block = self.blocks.get(block_name)
        if not isinstance(block, Mapping) or not isinstance(block.get("args", {}), Mapping):
            return entry  # reported once, where the blocks are checked
        declared = _declared_args(block)
        given = raw.get("args", {})
        args = dict(declared)
        problems_before = len(self.problems)
        for key, value in given.items():
            if key not in declared:
                self.problems.append(f"{where}: block {block_name!r} has no argument {_json(key)}{_hint(key, declared)}")
            args[key] = value
        for key, value in args.items():
            if value is None:
                self.problems.append(f"{where}: block {block_name!r} needs argument {_json(key)}")
        if len(self.problems) != problems_before:
            return entry  # not expanded: its layers would only repeat the missing arguments as nulls
        instance = ".".join(scope)
        outer = f'{where} (instance "{instance}" of block "{block_name}") > '
        return self.expand(block.get("layers"), f"blocks.{block_name}.layers", scope, entry, outer, args, depth + 1)


    def bad_name(self, name: Any, where: str) -> bool:
        """Report a name that is not a valid layer or instance name; True if it was bad."""
        problem = name_problem(name)
        if problem is None and name == INPUT:
            problem = f'name "{INPUT}" is the graph\'s input node (layers read it as "inputs": ["{INPUT}"]); choose another'
        if problem:
            self.problems.append(f"{where}: {problem}")
        return problem is not None


def _hint(word: Any, choices: Any) -> str:
    """did_you_mean for a key or name that may not be a string at all."""
    return did_you_mean(word, choices) if isinstance(word, str) and len(word) <= MAX_NAME_LENGTH else ""


def _inherited(given: Mapping[str, Any], block: str, target: str, blocks: Mapping[str, Any]) -> Mapping[str, Any]:
    """The instance's arguments an override of one repetition keeps: all of them for the same
    block; for another block (a stage's first unit as a downsampling block), those it declares."""
    if target == block:
        return given
    declared = _declared_args(blocks.get(target, {})) if isinstance(blocks.get(target), Mapping) else {}
    return {key: value for key, value in given.items() if key in declared}


def _declared_args(block: Mapping[str, Any]) -> Mapping[str, Any]:
    """A block's argument defaults; a malformed ``args`` (reported once, with the blocks) as none."""
    declared = block.get("args", {})
    return declared if isinstance(declared, Mapping) else {}


def _override_problem(override: Any, blocks: Mapping[str, Any], what: str) -> str | None:
    """Why one override of an instance (``first``, ``last`` or ``at."2"``: what that repetition
    changes) is malformed, or None."""
    if not isinstance(override, Mapping):
        return f'{what} must be an object with "block" and/or "args", got {_json(override)}'
    for key in override:
        if key not in _OVERRIDE_KEYS:
            return f"{what} has unknown key {_json(key)}{_hint(key, _OVERRIDE_KEYS) or '; it takes block and args'}"
    if "block" in override and (not isinstance(override["block"], str) or override["block"] not in blocks):
        return f"{what}.block: unknown block {_json(override['block'])}{_hint(override['block'], blocks)}"
    if not isinstance(override.get("args", {}), Mapping):
        return f"{what}.args must be an object of argument values, got {_json(override['args'])}"
    return None


def _overrides(raw: Mapping[str, Any], repeat: int, blocks: Mapping[str, Any]) -> dict[int, tuple[Mapping[str, Any], str]] | str:
    """The repetitions an instance changes, by index from 0, or why its overrides are malformed.

    ``first`` is index 0, ``last`` index ``repeat - 1``, and ``at`` maps indices written as text
    (JSON keys are strings; ``"-1"`` counts from the end, as in Python) to overrides. Each changes
    the block and/or the arguments of that one repetition; two overrides of one repetition are an
    error rather than a silent merge.
    """
    written: list[tuple[str, Any, Any]] = []  # (how it was written, the index, the override)
    for key in ("first", "last"):
        if key in raw:
            written.append((key, 0 if key == "first" else -1, raw[key]))
    at = raw.get("at", {})
    if not isinstance(at, Mapping):
        return f'at must be an object from instance indices ("0", "-1"...) to overrides, got {_json(at)}'
    for key, override in at.items():
        what = f"at[{_json(key)}]"
        try:
            index = int(key) if isinstance(key, str) and len(key) <= 12 else None
        except ValueError:
            index = None
        if index is None or str(index) != key:
            return f'{what}: an instance index must be an int written as text ("0", "2", "-1"), got {_json(key)}'
        if not -repeat <= index < repeat:
            last = f"0..{repeat - 1} or -{repeat}..-1" if repeat > 1 else "0 or -1"
            return f"{what}: instance {index} is out of range for repeat {repeat} ({last})"
        written.append((what, index, override))
    overrides: dict[int, Mapping[str, Any]] = {}
    given_as: dict[int, str] = {}
    for what, index, override in written:
        problem = _override_problem(override, blocks, what)
        if problem:
            return problem
        index %= repeat
        if index in overrides:
            return (f"{given_as[index]} and {what} both change instance {index} (repeat {repeat}); "
                    "give each instance one override")
        overrides[index], given_as[index] = override, what
    return {index: (override, given_as[index]) for index, override in overrides.items()}


def _is_scope(value: Any) -> bool:
    return isinstance(value, list) and all(name_problem(v) is None for v in value)


def _substitute(value: Any, args: Mapping[str, Any], where: str, problems: list[str], refs: dict[int, bool]) -> Any:
    """Replace every ``"$arg"`` string in a block's layer by the instance's argument.

    Lists and objects without any ``"$..."`` string are returned as they are, found once per
    container and load (``refs``, by id): a large literal in a block repeated a million times
    is not copied a million times.
    """
    if isinstance(value, str) and value.startswith("$"):
        key = value[1:]
        if key not in args:
            problems.append(f"{where}: {_json(value)} names no argument of the block{_hint(key, args)}")
            return value
        return args[key]
    if not _has_refs(value, refs):
        return value
    if isinstance(value, Mapping):
        return {k: _substitute(v, args, where, problems, refs) for k, v in value.items()}
    return [_substitute(v, args, where, problems, refs) for v in value]


def _has_refs(value: Any, refs: dict[int, bool]) -> bool:
    """True if a list or object holds a ``"$..."`` string at any depth; memoised in ``refs``.

    Only containers of the spec itself are memoised (they live as long as the load), never the
    substituted copies.
    """
    if isinstance(value, str):
        return value.startswith("$")
    if not isinstance(value, (Mapping, list)):
        return False
    if id(value) not in refs:
        items = value.values() if isinstance(value, Mapping) else value
        refs[id(value)] = any(_has_refs(item, refs) for item in items)
    return refs[id(value)]


def _declared_names(layers: Any) -> set[str]:
    """Top-level names given explicitly, to tell a later reference from an unknown one."""
    if not isinstance(layers, list):
        return set()
    return {raw["name"] for raw in layers if isinstance(raw, Mapping) and isinstance(raw.get("name"), str)}


class _Recursion(Exception):
    """A block instantiates itself, directly or through others (or blocks nest too deep)."""

    def __init__(self, cycle: tuple[str, ...], too_deep: bool = False) -> None:
        super().__init__(cycle)
        self.cycle = cycle
        self.too_deep = too_deep


@dataclass
class _Counter:
    """Counts the layers a spec expands to from its block structure, without expanding it.

    An instance repeated r times counts its overridden repetitions (``first``, ``last``, ``at``)
    one by one and the others as ``rest`` each; each block's count is kept
    per set of arguments, so nine nested blocks repeating 10 times cost nine counts, not 10**9.
    Malformed parts count zero (the expansion reports them).
    """

    blocks: Mapping[str, Any]
    memo: dict[tuple[str, Any], int] = field(default_factory=dict)
    refs: dict[int, bool] = field(default_factory=dict)

    def layers(self, layers: Any, args: Mapping[str, Any], stack: tuple[str, ...]) -> int:
        if not isinstance(layers, list):
            return 0
        total = 0
        for raw in layers:
            if isinstance(raw, Mapping):
                total += self.layer(_substitute(raw, args, "", _Problems(), self.refs) if stack else raw, stack)
        return total

    def layer(self, raw: Mapping[str, Any], stack: tuple[str, ...]) -> int:
        if "block" not in raw:
            return 1
        repeat, given = raw.get("repeat", 1), raw.get("args", {})
        if not (isinstance(repeat, int) and 1 <= repeat <= MAX_INT and isinstance(given, Mapping)):
            return 0
        overrides = _overrides(raw, repeat, self.blocks)
        if isinstance(overrides, str):
            return 0
        rest = self.block(raw["block"], given, stack)
        changed = sum(
            self.block(o.get("block", raw["block"]),
                       {**_inherited(given, raw["block"], o.get("block", raw["block"]), self.blocks), **o.get("args", {})},
                       stack)
            for o, _ in overrides.values()
        )
        return changed + (repeat - len(overrides)) * rest

    def block(self, name: Any, given: Mapping[str, Any], stack: tuple[str, ...]) -> int:
        if not isinstance(name, str) or not isinstance(self.blocks.get(name), Mapping):
            return 0
        if name in stack:
            raise _Recursion((*stack[stack.index(name):], name))
        if len(stack) >= MAX_BLOCK_DEPTH:
            raise _Recursion((*stack, name), too_deep=True)
        block = self.blocks[name]
        args = {**_declared_args(block), **given}
        key = (name, _freeze(args))
        if key not in self.memo:
            self.memo[key] = self.layers(block.get("layers"), args, (*stack, name))
        return self.memo[key]


def _freeze(value: Any) -> Any:
    """A hashable, exact copy of JSON-like data (no text conversion: an int may be huge)."""
    if isinstance(value, Mapping):
        return ("{}", tuple(sorted((str(k), _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return ("[]", tuple(_freeze(v) for v in value))
    return (type(value).__name__, value) if isinstance(value, (int, float, str, bool, type(None))) else ("?", id(value))


def _expansion_problem(layers: Any, blocks: Mapping[str, Any], max_layers: int) -> str | None:
    """Refuse, before expanding, a spec whose blocks recurse or expand above ``max_layers``."""
    if not isinstance(layers, list):
        return None
    counter = _Counter(blocks)
    try:
        counts = [counter.layer(raw, ()) if isinstance(raw, Mapping) else 0 for raw in layers]
    except _Recursion as recursion:
        if recursion.too_deep:
            chain = " -> ".join((*recursion.cycle[:3], "...", *recursion.cycle[-2:]))
            return f"blocks.{recursion.cycle[0]}: blocks nest more than {MAX_BLOCK_DEPTH} deep ({chain})"
        cycle = " -> ".join(recursion.cycle)
        return f"blocks.{recursion.cycle[0]}: block {recursion.cycle[0]!r} instantiates itself ({cycle}); blocks cannot recurse"
    total = sum(counts)
    if total <= max_layers:
        return None
    index = max(range(len(counts)), key=counts.__getitem__)
    raw = layers[index]
    how = "raise it with load(..., max_layers=N) or `archcalc --max-layers N`"
    if not isinstance(raw, Mapping) or "block" not in raw:
        return f"layers: the spec has {total:,} layers, above the limit of {max_layers:,}; {how}"
    whole = "" if total == counts[index] else f" (the whole spec: {total:,})"
    return (
        f'layers[{index}] (block "{raw["block"]}", repeat {raw.get("repeat", 1)}): expands to {counts[index]:,} layers'
        f"{whole}, above the limit of {max_layers:,}; {how}"
    )


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any, int]]:
    """Every value inside a spec with its JSON path and depth, each container visited once."""
    stack = [(value, path, 0)]
    seen: dict[int, int] = {}
    while stack:
        item, where, depth = stack.pop()
        yield where, item, depth
        if isinstance(item, (Mapping, list, tuple)):
            if seen.get(id(item), -1) >= depth or depth > MAX_NESTING:
                continue
            seen[id(item)] = depth
            if isinstance(item, Mapping):
                children = [(v, _key_path(where, k), depth + 1) for k, v in item.items() if isinstance(k, str)]
            else:
                children = [(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item)]
            stack.extend(reversed(children))


def _key_path(where: str, key: str) -> str:
    """``layers[0].alpha``; a key that is not a plain name is quoted (``layers[0]['a b']``)."""
    if key.isidentifier() and len(key) <= MAX_NAME_LENGTH:
        return f"{where}.{key}" if where else key
    return f"{where}[{describe(key)}]"


def _structure_problems(spec: Mapping[str, Any], parsed: _Parsed | None) -> list[str]:
    """Problems of the spec as a tree: nesting too deep, keys that are not strings, and (from
    JSON text) repeated keys and numbers JSON cannot hold exactly (Infinity, NaN, huge ints)."""
    problems = []
    for where, value, depth in _walk(spec):
        if depth > MAX_NESTING:
            problems.append(f"{where}: nested deeper than {MAX_NESTING} levels of lists and objects")
            break
        if isinstance(value, Mapping) and any(not isinstance(k, str) for k in value):
            key = next(k for k in value if not isinstance(k, str))
            problems.append(f"{where or 'top level'}: keys must be strings, got {_json(key)}")
        if parsed is not None:
            if isinstance(value, _BadNumber):
                problems.append(f"{where}: {value.problem}")
            for key in parsed.duplicates.get(id(value), ()):
                problems.append(f"{where or 'top level'}: key {key!r} appears twice in one object (JSON keeps only the last)")
    return problems


def from_dict(
    spec: Any,
    source: str = "<dict>",
    wheres: list[str] | None = None,
    max_layers: int = MAX_LAYERS,
    _parsed: _Parsed | None = None,
) -> Graph:
    """Validate a spec given as a dict and build its graph.

    Args:
        spec: the spec as JSON-like data (dicts, lists, strings, ints, floats, bools, None).
        source: names the spec in messages (``spec 'net.json': ...``).
        wheres: optionally locates each top-level layer (the DSL passes ``file.py:line``).
        max_layers: the most layers the blocks may expand to; checked before expanding.

    Returns:
        The graph; ``graph.warnings`` holds doubts that are not errors (a channels-last input).

    Raises:
        SpecError: every problem found (the first ``MAX_PROBLEMS``), each a line naming its place.
    """
    prefix = f"spec {quote(source)}: "
    if not isinstance(spec, Mapping):
        raise SpecError(f"{prefix}a spec must be a JSON object, got {_json(spec)}")
    problems = _Problems()
    problems.extend(_structure_problems(spec, _parsed))
    if problems:
        raise problems.error(prefix)
    problems.extend(
        f"unknown key {_json(key)}{_hint(key, _TOP_KEYS) or '; a spec has ' + ', '.join(_TOP_KEYS)}"
        for key in spec
        if key not in _TOP_KEYS
    )
    name = spec.get("name", "")
    problem = name_problem(name, "name", spaces=True) if "name" in spec else "name must be a non-empty string, got nothing"
    if problem:
        problems.append(problem)
    description = spec.get("description", "")
    problem = _description_problem(description, "description")
    if problem:
        problems.append(problem)
    reference_problems = list(_reference_problems(spec["reference"])) if "reference" in spec else []
    problems.extend(reference_problems)
    reference = None
    if "reference" in spec and not reference_problems:
        reference = Reference(float(spec["reference"]["top1"]), spec["reference"]["source"])
    shape = spec.get("input")
    if not (
        isinstance(shape, list)
        and 1 <= len(shape) <= 4
        and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INT for v in shape)
    ):
        too_big = isinstance(shape, list) and any(isinstance(v, int) and v > MAX_INT for v in shape)
        problems.append(
            "input must be a channels-first shape of positive ints, (C,), (C, L), (C, H, W) or (C, D, H, W), "
            + (f"each at most {MAX_INT} (2**31 - 1), " if too_big else "")
            + f"got {_json(shape) if 'input' in spec else 'nothing'}"
        )
        shape = None
    if shape is None:
        raise problems.error(prefix)
    blocks = spec.get("blocks", {})
    if not isinstance(blocks, Mapping):
        problems.append(f"blocks must be an object of block definitions, got {_json(blocks)}")
        blocks = {}
    problems.extend(_block_problems(blocks))
    rejected = {k for k in blocks if name_problem(k) is not None}  # reported once, never expanded
    blocks = {k: v for k, v in blocks.items() if k not in rejected}
    if not isinstance(max_layers, int) or isinstance(max_layers, bool) or max_layers < 1:
        raise SpecError(f"max_layers must be a positive int, got {max_layers!r}")
    problem = _expansion_problem(spec.get("layers"), blocks, max_layers)
    if problem:
        problems.append(problem)
        raise problems.error(prefix)
    builder = _Builder(blocks, all_declared=_declared_names(spec.get("layers")), wheres=wheres, problems=problems,
                       rejected=rejected)
    input_node = Node(INPUT, "input", {}, (), (), "input")
    builder.expand(spec.get("layers"), "layers", (), INPUT, "", {})
    if problems:
        raise problems.error(prefix)
    warning = channels_last_warning(tuple(shape))
    warnings = (prefix + warning,) if warning else ()
    return Graph(name, tuple(shape), (input_node, *builder.nodes), description, source, warnings, reference)


def _reference_problems(reference: Any) -> Iterator[str]:
    """Problems of a spec's ``"reference"``: an object with a number ``top1`` in [0, 100] (percent)
    and a non-empty one-line ``source`` (the citation)."""
    if not isinstance(reference, Mapping):
        yield f'reference must be an object {{"top1": <percent>, "source": "<citation>"}}, got {_json(reference)}'
        return
    for key in reference:
        if key not in _REFERENCE_KEYS:
            yield f"reference: unknown key {_json(key)}{_hint(key, _REFERENCE_KEYS) or '; a reference has ' + ', '.join(_REFERENCE_KEYS)}"
    top1 = reference.get("top1")
    if not (isinstance(top1, (int, float)) and not isinstance(top1, bool) and 0 <= top1 <= 100):
        yield ("reference.top1 must be a number from 0 to 100 (top-1 accuracy in percent), got "
               + (_json(top1) if "top1" in reference else "nothing"))
    text = reference.get("source")
    if not isinstance(text, str) or not text.strip():
        yield "reference.source must be a non-empty string (the citation), got " + (_json(text) if "source" in reference else "nothing")
    else:
        problem = _description_problem(text, "reference.source")
        if problem:
            yield problem


def _description_problem(value: Any, what: str) -> str | None:
    """Why a description is not one line of printable text of at most MAX_DESCRIPTION_LENGTH."""
    if not isinstance(value, str):
        return f"{what} must be a string, got {_json(value)}"
    if len(value) > MAX_DESCRIPTION_LENGTH:
        return f"{what} must be at most {MAX_DESCRIPTION_LENGTH} characters, got {len(value)}"
    return _text_problem(value, what, spaces=True)


def _block_problems(blocks: Mapping[str, Any]) -> Iterator[str]:
    """Problems of the block definitions themselves (names, keys, args), each reported once."""
    for block_name, block in blocks.items():
        where = f"blocks.{block_name}"
        problem = name_problem(block_name, "a block name")
        if problem:
            yield f"blocks: {problem}"
            continue
        if not isinstance(block, Mapping):
            yield f"{where}: must be an object with args and layers, got {_json(block)}"
            continue
        for key in block:
            if key not in _BLOCK_KEYS:
                yield f"{where}: unknown key {_json(key)}{_hint(key, _BLOCK_KEYS) or '; a block has ' + ', '.join(_BLOCK_KEYS)}"
        if not isinstance(block.get("args", {}), Mapping):
            yield f"{where}.args: must be an object of argument defaults (null: required), got {_json(block['args'])}"
        problem = _description_problem(block.get("description", ""), f"{where}.description")
        if problem:
            yield problem


class _BadNumber:
    """A number in JSON text that archcalc refuses (Infinity, NaN, 1e400, a 5000-digit int)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem

    def __repr__(self) -> str:
        return "a number JSON cannot hold"


@dataclass
class _Parsed:
    """What parsing JSON text noticed beside the values: repeated keys, by object id."""

    duplicates: dict[int, list[str]] = field(default_factory=dict)


def _parse_float(text: str) -> float | _BadNumber:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        return _BadNumber(f"{text} is too large for a number (the largest is about 1.8e308)")
    return value


def _parse_int(text: str) -> int | _BadNumber:
    if len(text) > 100:  # Python refuses over 4300 digits; nothing archcalc reads needs 100
        return _BadNumber(f"an int of {len(text.lstrip('-'))} digits is too large (the largest is {MAX_INT})")
    return int(text)


def _parse_constant(text: str) -> _BadNumber:
    return _BadNumber(f"{text} is not a number JSON allows; give a finite number")


def from_json(text: str | bytes, source: str = "<json>", max_layers: int = MAX_LAYERS) -> Graph:
    """Parse JSON text (str, or UTF-8 bytes) and build its graph.

    Raises:
        SpecError: not UTF-8, not valid JSON (with its line and column), nested too deeply,
            a key repeated in one object, Infinity/NaN, or anything :func:`from_dict` refuses.
    """
    prefix = f"spec {quote(source)}: "
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            utf16 = " (it looks like UTF-16)" if text[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
            raise SpecError(f"{prefix}not UTF-8 text: byte 0x{text[error.start]:02x} at offset {error.start} "
                            f"cannot be decoded{utf16}; save the file as UTF-8") from None
    parsed = _Parsed()

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                parsed.duplicates.setdefault(id(obj), []).append(key)
            obj[key] = value
        return obj

    try:
        spec = json.loads(text, object_pairs_hook=pairs, parse_float=_parse_float, parse_int=_parse_int,
                          parse_constant=_parse_constant)
    except json.JSONDecodeError as error:
        raise SpecError(f"{prefix}not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    except RecursionError:
        raise SpecError(f"{prefix}lists and objects nest too deeply to parse (a spec nests at most {MAX_NESTING} deep)") from None
    return from_dict(spec, source, max_layers=max_layers, _parsed=parsed)
