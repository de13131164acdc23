"""Readable specs: any graph written back as a spec a person can read, that loads to the same graph.

:func:`readable_spec` turns a :class:`~archcalc.graph.Graph` (from the zoo, the DSL or an
importer, which hands over flat graphs: every layer with its name, type, attributes and explicit
inputs) into a spec dict, and :func:`dump_spec` writes it as JSON text, one layer per line.

What makes it short:

- attributes equal to their op's default are left out, and ``inputs`` where a layer reads the
  one before it;
- repeated structures become blocks. Dotted names (module paths, ``layer1.0.conv1``) give the
  candidates: the layers sharing a prefix (``layer1.0``), consecutive, form an instance of a
  block named after the prefix. Instances whose layers are equal in type, local name and wiring
  (the structural signature) share one definition; the values that differ between them (a
  conv's ``filters``, a ``stride``, an input read from outside) become the block's arguments.
  Which prefixes become instances is chosen per prefix tree by the lines it saves (a tree
  dynamic programme: an Inception module as a whole, a ResNet stage's units rather than the
  stage). Consecutive instances ``P.0``, ``P.1``... ``P.(r-1)`` that are all of ``P`` become
  one instance ``P`` with ``repeat: r``, the repetitions that differ given by ``first``,
  ``last`` or ``at`` (a stage's downsampling first unit);
- blocks hold blocks, one level deep: inside a chosen instance, groups that read only their
  own input and whose inner layers nothing else reads (Inception-v3's conv-batchnorm-relu units
  in its modules) become nested instances, their arguments passed through;
- a unit that starts by merging several inputs (torchvision's DenseNet layers, traced, each
  concatenate every earlier feature map: 1, 2, 3... inputs) may become an instance of its other
  layers, the merge written flat before it.

What it keeps: :func:`archcalc.spec.from_dict` of the result gives the same nodes in the same
order, with equal name, type, attributes and inputs. A node's ``scope`` (the block instances it
was expanded from) is what the written blocks give, which may differ from the graph's: a flat
imported graph has none, and gets the scopes of the blocks found here. Names are never changed:
the spec's blocks name their layers ``instance.layer`` (``instance.index.layer`` when
repeated), so a graph whose names have no dots (Caffe layer names, many ONNX node names) has no
instance that reproduces them and is written flat; torch.onnx's names (``/layer2/layer2.0/
conv1/Conv``) share blocks where their dots allow (per stage). Every spec written is checked by
loading it back; should that ever differ, the flat spec (which always reproduces the graph) is
returned.

Opt-in (``readable_spec(graph, rename=True)``), for names without dots: structural detection
of repeated runs (:func:`structural_renaming`: layers keyed by type and how far back their
inputs are, runs whose keys repeat with a period up to ``MAX_PERIOD``, taken greedily), whose
layers are renamed ``stageN.K.convM`` so that the name-based search above makes blocks of them.
The units found are structural (the shortest period that repeats), not necessarily a paper's
modules; the loaded graph equals the original up to those names.

Work is bounded: O(n * d) for n layers and names of d dotted parts (d counted up to
``MAX_NAME_DEPTH``), plus one load of the result.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import groupby
from operator import eq
from typing import Any

from archcalc.graph import INPUT, Graph, Node
from archcalc.ops import REGISTRY

#: Dotted name parts considered as block prefixes (``a.b.c...``); deeper parts are leaves.
MAX_NAME_DEPTH = 16
#: Width of a line of :func:`dump_spec`; a layer longer than this is broken over lines.
LINE_WIDTH = 160
#: How many of a repeat's repetitions may be overrides (``first``/``last``/``at``): at most
#: half (and always one): beyond that, one instance per repetition reads better.
_MAX_OVERRIDE_SHARE = 0.5


def _plain(value: Any) -> Any:
    """Tuples (nested) as lists, for JSON."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _exact(value: Any) -> Any:
    """A hashable key equal only for equal values of equal types (1, 1.0 and True differ)."""
    kind = type(value)
    if kind is int or kind is str or kind is bool or value is None:
        return (kind.__name__, value)
    if isinstance(value, (tuple, list)):
        return ("[]", tuple(_exact(v) for v in value))
    if isinstance(value, Mapping):
        return ("{}", tuple(sorted((str(k), _exact(v)) for k, v in value.items())))
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def _has_dollar(value: Any) -> bool:
    """True if a string anywhere in value starts with "$" (a block would read it as an argument)."""
    if value is None or isinstance(value, (int, float)):
        return False
    if isinstance(value, str):
        return value.startswith("$")
    if isinstance(value, (tuple, list)):
        return any(_has_dollar(v) for v in value)
    if isinstance(value, Mapping):
        return any(_has_dollar(v) for v in value.values())
    return False


def _attrs(node: Node) -> dict[str, Any]:
    """The attributes a spec must give: those different from the op's defaults, as JSON values."""
    defaults = REGISTRY[node.type].defaults() if node.type in REGISTRY else {}
    return {
        key: _plain(value)
        for key, value in node.attrs.items()
        if key not in defaults or _exact(value) != _exact(defaults[key])
    }


def _flat_layer(node: Node, previous: str) -> dict[str, Any]:
    layer: dict[str, Any] = {"type": node.type, "name": node.name}
    layer.update(_attrs(node))
    if node.inputs != (previous,):
        layer["inputs"] = list(node.inputs)
    return layer


def _head(graph: Graph) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": graph.name}
    if graph.description:
        spec["description"] = graph.description
    spec["input"] = list(graph.input_shape)
    return spec


def flat_spec(graph: Graph) -> dict[str, Any]:
    """The graph as a spec without blocks: every layer named, defaults and default inputs left out.

    Loads back (``archcalc.spec.from_dict``) to nodes equal in name, type, attributes and inputs;
    every node's scope is then empty.
    """
    spec = _head(graph)
    previous = INPUT
    layers = []
    for node in graph.nodes[1:]:
        layers.append(_flat_layer(node, previous))
        previous = node.name
    spec["layers"] = layers
    return spec


# --- candidate instances: the prefix tree of dotted names -------------------------------------


@dataclass(eq=False)
class _Group:
    """Consecutive layers [start, end) whose names all start with ``prefix + "."`` (compared by identity)."""

    prefix: str
    parts: tuple[str, ...]
    start: int
    end: int
    children: list[_Group] = field(default_factory=list)
    #: The structural signature's number (None: cannot be an instance; equal numbers, equal
    #: signatures), the signature itself (per layer: kind, local name, wiring) and the layers
    #: read from outside, in order; set in _shape.
    signature: int | None = None
    layout: tuple[Any, ...] = ()
    externals: tuple[str, ...] = ()
    chosen: bool = False
    #: Chosen as a unit of a repeat (kept even if its block is used once).
    forced: bool = False
    #: "self", "trimmed", "units" or "children": what _choose decided for this group.
    decision: str = "children"
    #: No other group has this prefix (a prefix seen twice cannot name an instance).
    unique: bool = True
    #: Its units differ too much in their arguments to be one repeat.
    no_units: bool = False
    #: Chosen as a nested instance inside a chosen group (see _nested_blocks).
    inner: bool = False
    #: The group without its first layer, when that layer merges several inputs (see _structured).
    trimmed: _Group | None = None

    def __len__(self) -> int:
        return self.end - self.start


def _prefix_groups(parts: list[tuple[str, ...]], start: int, end: int, depth: int) -> list[_Group]:
    """The maximal runs in [start, end) sharing name part ``depth`` (layers with more parts), nested."""
    groups = []
    index = start
    while index < end:
        here = parts[index]
        if len(here) <= depth + 1 or depth >= MAX_NAME_DEPTH:
            index += 1
            continue
        head = here[depth]
        stop = index + 1
        while stop < end and len(parts[stop]) > depth + 1 and parts[stop][depth] == head:
            stop += 1
        prefix_parts = here[: depth + 1]
        group = _Group(".".join(prefix_parts), prefix_parts, index, stop)
        group.children = _prefix_groups(parts, index, stop, depth + 1)
        groups.append(group)
        index = stop
    return groups


def _walk(groups: list[_Group]) -> list[_Group]:
    """Every group of the trees, parents before children."""
    out: list[_Group] = []
    stack = list(reversed(groups))
    while stack:
        group = stack.pop()
        out.append(group)
        stack.extend(reversed(group.children))
    return out


def _local_ok(local: str) -> bool:
    """A layer's name inside a block: the rest of a valid full name after ``prefix.`` is a valid
    name unless it is "input" (the instance's input there) or starts with "$" (an argument)."""
    return bool(local) and local != INPUT and not local.startswith("$")


def _kind(node: Node) -> tuple[str, tuple[str, ...]] | None:
    """What a layer's signature holds besides its name and wiring: its type and which attributes
    are null (a null argument means "required", so those stay literal); None if an attribute
    holds a string starting with "$" (a block would read it as an argument)."""
    if any(_has_dollar(value) for value in node.attrs.values()):
        return None
    return node.type, tuple(key for key, value in node.attrs.items() if value is None)


def _shape(group: _Group, layers: tuple[Node, ...], kinds: list[Any], table: dict[Any, int]) -> None:
    """Set the group's structural signature, or leave it None when no block can reproduce it.

    The signature holds, per layer, its kind (:func:`_kind`), local name (the name without
    ``prefix.``) and how its inputs are wired (a local name, "input" for what the instance reads,
    or the n-th outside layer, passed as an argument). Values of attributes are not in it: they
    become arguments where instances differ. ``table`` numbers the signatures seen (the number
    is what is hashed and compared from then on).
    """
    cut = len(group.prefix) + 1
    entry = layers[group.start].inputs[0]
    local_of: dict[str, str] = {}
    defined: set[str] = set()
    externals: dict[str, int] = {}
    signature = []
    for index in range(group.start, group.end):
        node, kind = layers[index], kinds[index]
        local = node.name[cut:]
        if kind is None or not _local_ok(local):
            return
        wiring: list[Any] = []
        for ref in node.inputs:
            if ref in local_of:
                wiring.append(local_of[ref])
            elif ref == entry:
                wiring.append(INPUT)
            else:
                # read inside the block as a full name: it must not be shadowed by a local name
                # already defined there, nor be "input" (inside a block, the instance's input)
                if ref == INPUT or ref in defined or ref.startswith("$"):
                    return
                wiring.append(("$", externals.setdefault(ref, len(externals))))
        signature.append((kind, local, tuple(wiring)))
        local_of[node.name] = local
        defined.add(local)
    group.layout = tuple(signature)
    group.signature = table.setdefault((group.layout, len(externals)), len(table))
    group.externals = tuple(externals)


def _choose(roots: list[_Group], counts: Counter, banned: set[Any], node_names: set[str],
            layers: tuple[Node, ...]) -> list[_Group]:
    """The groups to write as instances, in layer order: per tree, the choice saving the most lines.

    An instance of a block used c times costs one line plus 1/c of the block's definition
    (len lines): it saves ``len - 1 - len / c`` lines against writing its layers flat. A group
    is chosen when that beats the best choice among its children (or its layers but the first,
    when that one merges several inputs: see _structured); a group made of units
    ``P.0 .. P.(r-1)`` that chain may instead choose all of them, written as one line with
    ``repeat`` (r - 1 lines more saved), a unit that differs (a stage's first) included.
    """

    def gain(group: _Group) -> float | None:
        count = counts.get(group.signature, 0)
        if group.signature is None or group.signature in banned or count < 1:
            return None
        return len(group) - 1 - len(group) / count

    def best(group: _Group) -> float:
        value = sum(best(child) for child in group.children)
        group.decision = "children"
        if _unit_run(group, node_names, layers):
            gains = [gain(child) for child in group.children]
            if None not in gains and sum(gains) + len(gains) - 1 > value:  # type: ignore[arg-type]
                group.decision, value = "units", sum(gains) + len(gains) - 1  # type: ignore[arg-type]
        own = gain(group)
        if own is not None and counts[group.signature] >= 2 and own >= value and own > 0:
            group.decision, value = "self", own
        if group.trimmed is not None:
            rest = gain(group.trimmed)
            if rest is not None and counts[group.trimmed.signature] >= 2 and rest > value and rest > 0:
                group.decision, value = "trimmed", rest
        return value

    for root in roots:
        best(root)
    chosen: list[_Group] = []
    stack = list(reversed(roots))
    while stack:
        group = stack.pop()
        group.chosen = group.forced = False
        if group.decision == "self":
            group.chosen = True
            chosen.append(group)
        elif group.decision == "trimmed":
            group.trimmed.chosen, group.trimmed.forced = True, False  # type: ignore[union-attr]
            chosen.append(group.trimmed)  # type: ignore[arg-type]
        elif group.decision == "units":
            for child in group.children:
                child.chosen = child.forced = True
            chosen.extend(group.children)
        else:
            stack.extend(reversed(group.children))
    return chosen


def _unit_run(group: _Group, node_names: set[str], layers: tuple[Node, ...]) -> bool:
    """True if the group could be one instance with repeat: its layers are exactly its children
    P.0, P.1 ... P.(r-1), r >= 2, each reading the one before, and P can name an instance."""
    children = group.children
    return (len(children) >= 2 and children[0].start == group.start and children[-1].end == group.end
            and group.prefix not in node_names and group.prefix not in ("", INPUT) and group.unique and not group.no_units
            and all(child.parts[-1] == str(k) for k, child in enumerate(children))
            and all(a.end == b.start and layers[b.start].inputs[0] == layers[a.end - 1].name
                    for a, b in zip(children, children[1:]))
            and len(children) - Counter(c.signature for c in children).most_common(1)[0][1] <= _most_overrides(len(children)))


def _most_overrides(repeat: int) -> int:
    """How many of a repeat's repetitions may be overrides (first, last, at)."""
    return max(1, int(repeat * _MAX_OVERRIDE_SHARE))


# --- blocks: one definition per signature, arguments where instances differ -------------------


_STEM = re.compile(r"[A-Za-z][A-Za-z_]*?(?=_?[0-9]|$)")


def _block_stem(parts: tuple[str, ...]) -> str:
    """A block's name from an instance's prefix: ``layer1.0`` -> ``layer``, ``inception3a`` ->
    ``inception``, ONNX's ``/layer2/layer2`` -> ``layer``; ``block`` if no part has a word."""
    for part in reversed(parts):
        for word in reversed(re.split(r"[^A-Za-z0-9_]+", part)):
            match = _STEM.match(word)
            if match and not word.isdigit():
                return match.group(0)
    return "block"


def _block_names(members: Mapping[Any, list[_Group]]) -> dict[Any, str]:
    """Block names from their instances' prefixes (:func:`_block_stem`). Of blocks with one stem,
    the most used gets the stem; each other one the stem and the first part of a layer name
    the first block lacks (``layer_downsample``), else a number (``layer_2``)."""
    by_stem: dict[str, list[Any]] = {}
    for signature, group_list in members.items():
        by_stem.setdefault(_block_stem(group_list[0].parts), []).append(signature)
    names: dict[Any, str] = {}
    taken = set(by_stem)
    for stem, signatures in by_stem.items():
        ordered = sorted(signatures, key=lambda s: -len(members[s]))  # stable: first use breaks ties
        names[ordered[0]] = stem
        known = {local.split(".")[0] for _, local, _ in members[ordered[0]][0].layout}
        for signature in ordered[1:]:
            extra = [local.split(".")[0] for _, local, _ in members[signature][0].layout if local.split(".")[0] not in known]
            candidates = [f"{stem}_{part}" for part in extra[:1] if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part)]
            candidates += [f"{stem}_{k}" for k in range(2, len(members) + 3)]
            name = next(c for c in candidates if c not in taken)
            taken.add(name)
            names[signature] = name
    return names


@dataclass
class _Block:
    """One block definition: its name, layers and arguments, and each instance's argument values."""

    name: str
    definition: dict[str, Any]
    #: Per member group (by id): the full argument values (every declared argument).
    values: dict[int, dict[str, Any]]
    defaults: dict[str, Any]


@dataclass
class _Nested:
    """A nested instance inside a block: layers [start, end) of the block (offsets), written as
    an instance named ``name`` of the block of ``signature``; ``groups`` maps each member of the
    outer block (by id) to its group of those layers."""

    start: int
    end: int
    signature: Any
    name: str
    groups: dict[int, _Group]


def _make_block(name: str, members: list[_Group], layers: tuple[Node, ...], nested: list[_Nested] = (),
                inner: Mapping[Any, _Block] | None = None) -> _Block:
    """The block for groups of one signature: its layers (from the first member), with an
    argument for each attribute whose value differs between members, each outer layer read
    (``input2``...) and each argument of a nested instance that differs between members."""
    first = members[0]
    signature = first.layout
    size = len(first)
    inside = {offset for item in nested for offset in range(item.start, item.end)}
    # the columns: values that differ between members, each named (what, whose)
    columns: dict[tuple[Any, ...], list[Any]] = {}
    whose: dict[tuple[Any, ...], tuple[str, str]] = {}
    starts = {item.start: item for item in nested}
    for offset in range(size):
        item = starts.get(offset)
        if item is not None:
            block = inner[item.signature]  # type: ignore[index]
            for arg in block.defaults:
                values = [block.values[id(item.groups[id(m)])][arg] for m in members]
                if len({_exact(v) for v in values}) > 1:
                    columns[("nested", item.start, arg)] = values
                    whose[("nested", item.start, arg)] = (arg, item.name)
        if offset in inside:
            continue
        for key in layers[first.start + offset].attrs:
            values = [layers[m.start + offset].attrs[key] for m in members]
            if len({_exact(v) for v in values}) > 1:
                columns[(offset, key)] = [_plain(v) for v in values]
                whose[(offset, key)] = (key, signature[offset][1])
    # equal columns share one argument; one that varies in one way only is named as it is
    first_of: dict[Any, tuple[Any, ...]] = {}
    ways: Counter = Counter()
    for column, values in columns.items():
        vector = tuple(_exact(v) for v in values)
        if vector not in first_of:
            first_of[vector] = column
            ways[whose[column][0]] += 1
    column_arg: dict[tuple[Any, ...], str] = {}
    for column, values in columns.items():
        what, owner = whose[first_of[tuple(_exact(v) for v in values)]]
        column_arg[column] = what if ways[what] == 1 else f"{owner.replace('.', '_')}_{what}"
    arg_names = list(dict.fromkeys(column_arg.values()))
    external_args = [f"input{k + 2}" for k in range(len(first.externals))]
    values: dict[int, dict[str, Any]] = {}
    for index, member in enumerate(members):
        args = {column_arg[column]: column_values[index] for column, column_values in columns.items()}
        for arg, ref in zip(external_args, member.externals):
            args[arg] = ref
        values[id(member)] = args
    # an argument's default: the value most instances have, if more than half have it
    defaults: dict[str, Any] = {}
    for arg in [*arg_names, *external_args]:
        tally = Counter(_exact(values[id(m)][arg]) for m in members)
        common, count = tally.most_common(1)[0]
        if count >= 2 and count * 2 > len(members) and arg not in external_args:
            defaults[arg] = next(values[id(m)][arg] for m in members if _exact(values[id(m)][arg]) == common)
        else:
            defaults[arg] = None
    # the layers; a nested instance's output is read by its instance name
    renamed = {signature[item.end - 1][1]: item.name for item in nested}

    def ref(wire: Any) -> str:
        return renamed.get(wire, wire) if isinstance(wire, str) else "$" + external_args[wire[1]]

    block_layers = []
    previous_local = INPUT
    offset = 0
    while offset < size:
        item = starts.get(offset)
        if item is not None:
            block = inner[item.signature]  # type: ignore[index]
            instance: dict[str, Any] = {"block": block.name, "name": item.name}
            entry = ref(signature[offset][2][0])
            if entry != previous_local:
                instance["inputs"] = [entry]
            mine = block.values[id(item.groups[id(first)])]
            args = {}
            for arg, default in block.defaults.items():
                column = ("nested", item.start, arg)
                if column in column_arg:
                    args[arg] = "$" + column_arg[column]
                elif default is None or _exact(default) != _exact(mine[arg]):
                    args[arg] = mine[arg]
            if args:
                instance["args"] = args
            block_layers.append(instance)
            previous_local = item.name
            offset = item.end
            continue
        (op_type, _), local, wiring = signature[offset]
        node = layers[first.start + offset]
        layer: dict[str, Any] = {"type": op_type, "name": local}
        written = _attrs(node)
        for key in node.attrs:
            arg = column_arg.get((offset, key))
            if arg is not None:
                written[key] = "$" + arg
        layer.update({key: written[key] for key in node.attrs if key in written})
        refs = [ref(wire) for wire in wiring]
        if refs != [previous_local]:
            layer["inputs"] = refs
        block_layers.append(layer)
        previous_local = local
        offset += 1
    definition: dict[str, Any] = {}
    uses = len(members)
    definition["description"] = (f"{size} layers, {uses} instances ({members[0].prefix} .. {members[-1].prefix})"
                                 if uses > 1 else f"{size} layers")
    if defaults:
        definition["args"] = defaults
    definition["layers"] = block_layers
    return _Block(name, definition, values, defaults)


def _inner_choices(outer: _Group, layers: tuple[Node, ...], index_of: Mapping[str, int], counts: Counter,
                   outside: set[str]) -> list[_Group]:
    """Groups inside ``outer`` to write as nested instances in its block, chosen as _choose does.

    A nested group reads nothing from outside but its input (its layers can name no layer of
    the outer block but their own: the outer block's layer names are not full names there),
    and the outer block may read only its last layer (by the instance's name). Its name in the
    outer block must not read as an argument ("$..."), "input", or a layer the outer block reads
    from outside (``outside``: inside the block, the instance's name would shadow it).
    """
    cut = len(outer.prefix) + 1
    last_reader: dict[int, int] = {}
    for index in range(outer.start, outer.end):
        for ref in layers[index].inputs:
            read = index_of.get(ref, -1)
            if read >= outer.start:
                last_reader[read] = index

    def fits(group: _Group) -> bool:
        local = group.prefix[cut:]
        return (group.signature is not None and not group.externals and counts.get(group.signature, 0) >= 2
                and _local_ok(local) and local not in outside
                and all(last_reader.get(index, -1) < group.end for index in range(group.start, group.end - 1)))

    def best(group: _Group) -> float:
        below = sum(best(child) for child in group.children)
        group.inner = False
        if fits(group):
            gain = len(group) - 1 - len(group) / counts[group.signature]
            if gain >= below and gain > 0:
                group.inner = True
                return gain
        return below

    picks: list[_Group] = []
    stack = list(reversed(outer.children))
    for child in outer.children:
        best(child)
    while stack:
        group = stack.pop()
        if group.inner:
            picks.append(group)
        else:
            stack.extend(reversed(group.children))
    return picks


def _nested_blocks(members: dict[Any, list[_Group]], groups: list[_Group], layers: tuple[Node, ...],
                   counts: Counter) -> dict[Any, _Block] | None:
    """The blocks again, with blocks inside blocks where a block's layers hold repeated groups
    (an Inception module's conv-batchnorm-relu units); None when nothing nests.

    Nesting is one level: a block used inside another holds no instances itself. A nested block
    is kept when written at least twice (counting each outer block once).
    """
    index_of = {node.name: index for index, node in enumerate(layers)}
    by_range = {(g.start, g.end, len(g.parts)): g for g in groups}
    picks = {signature: _inner_choices(group_list[0], layers, index_of, counts, {ref for g in group_list for ref in g.externals})
             for signature, group_list in members.items()}
    for _ in range(8):
        inner = {p.signature for chosen in picks.values() for p in chosen}
        for signature in inner & set(picks):
            picks[signature] = []
        uses = Counter({signature: len(group_list) for signature, group_list in members.items()})
        for chosen in picks.values():
            uses.update(p.signature for p in chosen)
        kept = {signature: [p for p in chosen if uses[p.signature] >= 2] for signature, chosen in picks.items()}
        if kept == picks:
            break
        picks = kept
    else:
        return None
    nested: dict[Any, list[_Nested]] = {}
    inner_members: dict[Any, list[_Group]] = {}
    for signature, chosen in picks.items():
        first = members[signature][0]
        items = []
        for pick in chosen:
            groups_of: dict[int, _Group] = {}
            for member in members[signature]:
                shift = member.start - first.start
                match = by_range.get((pick.start + shift, pick.end + shift, len(pick.parts) - len(first.parts) + len(member.parts)))
                if match is None or match.signature != pick.signature:
                    return None
                groups_of[id(member)] = match
                inner_members.setdefault(pick.signature, []).append(match)
            items.append(_Nested(pick.start - first.start, pick.end - first.start, pick.signature,
                                 pick.prefix[len(first.prefix) + 1:], groups_of))
        nested[signature] = items
    if not inner_members:
        return None
    everything: dict[Any, list[_Group]] = {}
    for signature, group_list in members.items():
        everything[signature] = list(group_list)
    for signature, group_list in inner_members.items():
        everything.setdefault(signature, []).extend(group_list)
        everything[signature].sort(key=lambda g: g.start)
    names = _block_names(everything)
    blocks: dict[Any, _Block] = {}
    for signature in inner_members:
        blocks[signature] = _make_block(names[signature], everything[signature], layers)
    for signature, group_list in everything.items():
        if signature not in blocks:
            blocks[signature] = _make_block(names[signature], group_list, layers, nested.get(signature, []), blocks)
    return {signature: blocks[signature] for signature in everything}


def _given(block: _Block, values: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments an instance must give: those that differ from the block's defaults."""
    return {k: v for k, v in values.items() if block.defaults.get(k) is None or _exact(block.defaults[k]) != _exact(v)}


# --- writing ----------------------------------------------------------------------------------


def _structured(graph: Graph, nest: bool = True) -> dict[str, Any] | None:
    """The spec with blocks, or None when no repeated structure could be written as blocks;
    ``nest``: blocks may hold instances of blocks (one level)."""
    layers = graph.nodes[1:]
    if not layers:
        return None
    parts = [tuple(node.name.split(".")) for node in layers]
    roots = _prefix_groups(parts, 0, len(layers), 0)
    if not roots:
        return None
    groups = _walk(roots)
    node_names = {node.name for node in graph.nodes}
    prefix_count = Counter(group.prefix for group in groups)
    kinds = [_kind(node) for node in layers]
    table: dict[Any, int] = {}
    variants = []
    for group in groups:
        # the prefix of a valid name is a valid instance name, unless empty or "input"
        if (len(group) >= 2 and prefix_count[group.prefix] == 1 and group.prefix not in node_names
                and group.prefix not in ("", INPUT)):
            _shape(group, layers, kinds, table)
            if len(group) >= 3 and len(layers[group.start].inputs) >= 2:
                # a unit that starts by merging what came before (torchvision's DenseNet layers
                # concatenate all earlier features): its other layers, with the merge written flat
                trimmed = _Group(group.prefix, group.parts, group.start + 1, group.end)
                _shape(trimmed, layers, kinds, table)
                if trimmed.signature is not None:
                    group.trimmed = trimmed
                    variants.append(trimmed)
    counts = Counter(group.signature for group in (*groups, *variants) if group.signature is not None)
    banned: set[Any] = set()
    for group in groups:
        group.unique = prefix_count[group.prefix] == 1
    # choose, then undo what the writing cannot use, and choose again (each round bans or rules
    # out something, so this ends; in practice in two or three rounds)
    for _ in range(16):
        chosen = _choose(roots, counts, banned, node_names, layers)
        if not chosen:
            return None
        used = Counter(group.signature for group in chosen)
        lonely = {g.signature for g in chosen if used[g.signature] < 2 and not g.forced}
        if lonely:  # a block used once is no repetition (unless a repeat's unit): ban it
            banned |= lonely
            continue
        members: dict[Any, list[_Group]] = {}  # one block per signature, in order of first use
        for group in chosen:
            members.setdefault(group.signature, []).append(group)
        names = _block_names(members)
        blocks = {signature: _make_block(names[signature], group_list, layers) for signature, group_list in members.items()}
        refused = [g for g in groups if g.decision == "units" and g.children[0].forced and _overrides(g.children, blocks) is None]
        if not refused:  # a repeat whose repetitions differ too much in their arguments: not one
            break
        for group in refused:
            group.no_units = True
    else:
        return None
    if nest:
        blocks = _nested_blocks(members, groups, layers, counts) or blocks
    by_prefix = {group.prefix: group for group in groups if prefix_count[group.prefix] == 1}
    out_layers: list[dict[str, Any]] = []
    previous = INPUT
    position = 0
    chosen_at = {group.start: group for group in chosen}
    while position < len(layers):
        group = chosen_at.get(position)
        if group is None:
            node = layers[position]
            out_layers.append(_flat_layer(node, previous))
            previous = node.name
            position += 1
            continue
        run = _instance(_repeat_run(group, chosen_at, by_prefix, node_names, layers), blocks, previous, layers,
                        out_layers)
        previous = layers[run[-1].end - 1].name
        position = run[-1].end
    spec = _head(graph)
    # blocks used inside others first: each block is defined before it is used
    used_inside = {layer["block"] for block in blocks.values() for layer in block.definition["layers"] if "block" in layer}
    ordered = sorted(blocks.values(), key=lambda block: block.name not in used_inside)
    spec["blocks"] = {block.name: block.definition for block in ordered}
    spec["layers"] = out_layers
    return spec


def _repeat_run(group: _Group, chosen_at: Mapping[int, _Group], by_prefix: Mapping[str, _Group],
                node_names: set[str], layers: tuple[Node, ...]) -> list[_Group]:
    """The chosen groups ``P.0 .. P.(r-1)`` starting at ``group`` that make up all of ``P``, each
    reading the one before; ``[group]`` when there is no such run."""
    if len(group.parts) < 2 or group.parts[-1] != "0":
        return [group]
    base = group.parts[:-1]
    parent = by_prefix.get(".".join(base))
    if parent is None or parent.start != group.start or parent.prefix in node_names:
        return [group]
    run = [group]
    while run[-1].end < parent.end:
        following = chosen_at.get(run[-1].end)
        if (following is None or following.parts[:-1] != base or following.parts[-1] != str(len(run))
                or layers[following.start].inputs[0] != layers[run[-1].end - 1].name):
            return [group]
        run.append(following)
    return run if len(run) >= 2 and run[-1].end == parent.end else [group]


def _instance(run: list[_Group], blocks: Mapping[Any, _Block], previous: str, layers: tuple[Node, ...],
              out: list[dict[str, Any]]) -> list[_Group]:
    """Append the instance line for a run of chosen groups (one instance with repeat) or for its
    first group alone (when too many repetitions differ); return the groups written."""
    first = run[0]
    entry = layers[first.start].inputs[0]
    if len(run) > 1:
        overrides = _overrides(run, blocks)
        if overrides is not None:
            base_block, given, changed = overrides
            instance: dict[str, Any] = {"block": base_block.name, "name": ".".join(first.parts[:-1])}
            if entry != previous:
                instance["inputs"] = [entry]
            instance["repeat"] = len(run)
            if given:
                instance["args"] = given
            at = {}
            for index, override in changed.items():
                if index == 0:
                    instance["first"] = override
                elif index == len(run) - 1:
                    instance["last"] = override
                else:
                    at[str(index)] = override
            if at:
                instance["at"] = at
            out.append(instance)
            return run
        # too many repetitions differ: write the first alone, the rest follow
        run = run[:1]
    block = blocks[first.signature]
    instance = {"block": block.name, "name": first.prefix}
    if entry != previous:
        instance["inputs"] = [entry]
    given = _given(block, block.values[id(first)])
    if given:
        instance["args"] = given
    out.append(instance)
    return [first]


def _overrides(run: list[_Group], blocks: Mapping[Any, _Block]) -> tuple[_Block, dict[str, Any], dict[int, dict[str, Any]]] | None:
    """The repeat's block and arguments (the most common repetition's) and what each other
    repetition changes; None when more than half of them would differ."""
    per_unit = [(blocks[g.signature], blocks[g.signature].values[id(g)]) for g in run]
    tally = Counter((block.name, _exact(values)) for block, values in per_unit)
    # the most common repetition; of equally common ones, the one first seen latest (so that a
    # differing first unit, as a ResNet stage's, is the override)
    last_first = {key: index for index, key in reversed(list(enumerate((b.name, _exact(v)) for b, v in per_unit)))}
    base_name, base_key = max(tally, key=lambda key: (tally[key], last_first[key]))
    base_block, base_values = next((b, v) for b, v in per_unit if b.name == base_name and _exact(v) == base_key)
    given = _given(base_block, base_values)
    changed: dict[int, dict[str, Any]] = {}
    for index, (block, values) in enumerate(per_unit):
        if block is base_block and _exact(values) == base_key:
            continue
        inherited = given if block is base_block else {k: v for k, v in given.items() if k in block.defaults}
        effective = {**block.defaults, **inherited}
        args = {k: v for k, v in values.items() if effective.get(k) is None or _exact(effective[k]) != _exact(v)}
        override: dict[str, Any] = {}
        if block is not base_block:
            override["block"] = block.name
        if args:
            override["args"] = args
        changed[index] = override
    if len(changed) > _most_overrides(len(run)):
        return None
    return base_block, given, changed


def _same_nodes(graph: Graph, spec: Mapping[str, Any]) -> bool:
    """True if the spec loads to the graph's nodes (name, type, attributes, inputs; scope aside)."""
    from archcalc.errors import ArchcalcError
    from archcalc.spec import MAX_LAYERS, from_dict

    try:
        loaded = from_dict(spec, graph.source or "<readable spec>", max_layers=max(MAX_LAYERS, len(graph.nodes)))
    except ArchcalcError:
        return False
    if len(loaded.nodes) != len(graph.nodes) or loaded.input_shape != graph.input_shape:
        return False
    return all(
        a.name == b.name and a.type == b.type and a.inputs == b.inputs and a.attrs == b.attrs
        for a, b in zip(loaded.nodes, graph.nodes)
    )


def readable_spec(graph: Graph, *, blocks: bool = True, rename: bool = False) -> dict[str, Any]:
    """The graph as a spec a person can read, which loads back to the same nodes.

    Args:
        graph: any graph (``archcalc.load``, an importer's, a DSL ``Net``'s).
        blocks: find repeated structures and write them as blocks (the default); False writes
            every layer flat (still without defaults and default inputs).
        rename: also find repeated runs among layers whose names have no dots (which no block
            can reproduce: Caffe layer names, ONNX node names) by their structure alone, and
            rename their layers ``stageN.K.convM`` so that they can be blocks (see
            :func:`structural_renaming`). Off by default: the names are the graph's identity.

    Returns:
        A spec dict (``name``, ``description`` if any, ``input``, ``blocks`` if any,
        ``layers``). :func:`archcalc.spec.from_dict` of it gives nodes equal to the graph's in
        order, name, type, attributes and inputs; their ``scope`` is the blocks' (see the module
        docstring). Names without dots cannot be written inside blocks, so such graphs come out
        flat; with ``rename``, the nodes are equal but for the renamed layers' names (and the
        inputs naming them).
    """
    if rename:
        graph = renamed(graph, structural_renaming(graph))
    if blocks:
        for nest in (True, False):  # should nesting ever fail the check, blocks without it
            spec = _structured(graph, nest)
            if spec is None:
                break
            if _same_nodes(graph, spec):
                return spec
    return flat_spec(graph)


# --- structural detection, for names without dots ---------------------------------------------

#: Longest unit (in layers) that structural_renaming looks for: O(n * MAX_PERIOD) work.
MAX_PERIOD = 32


def structural_renaming(graph: Graph, max_period: int = MAX_PERIOD) -> dict[str, str]:
    """New names for layers in repeated runs that their own names cannot make blocks of.

    Each layer whose name has no dot gets a key: its type, which attributes are null, and how
    far back each of its inputs is (the network input counting as position -1); attribute
    values are left out (they become block arguments). A run of layers whose keys repeat with
    period p (``keys[i] == keys[i + p]``), at least two units long, is a candidate; runs are
    taken greedily by layers saved, without overlap, when each unit reads only its own layers
    and the layer before it (the previous unit's last), at the first phase where they do. Work:
    O(n * max_period) key compares (in C), and at worst O(n * max_period**2) steps of checking
    units (a check stops at its first outside read; in practice about one pass).

    Returns:
        old name -> new name: unit K of the N-th run becomes ``stageN.K.<stem><count>``
        (``stage1.0.conv1``, ``stage1.0.relu1``, ``stage1.1.conv1``...), ``stageN`` chosen so
        that no new name, nor any prefix of one, is a name of the graph.
    """
    layers = graph.nodes[1:]
    index_of = {node.name: index for index, node in enumerate(layers)}
    index_of[INPUT] = -1
    table: dict[Any, int] = {}
    keys = []
    for index, node in enumerate(layers):
        if "." in node.name:
            keys.append(-1 - index)  # never equal to another layer's key
            continue
        kind = _kind(node)
        offsets = tuple(index - index_of[ref] for ref in node.inputs)
        keys.append(table.setdefault((kind, offsets), len(table)) if kind is not None else -1 - index)
    n = len(keys)
    candidates = []
    for period in range(1, min(max_period, n // 2) + 1):
        # runs of positions i with keys[i] == keys[i + period], found in C (groupby over map(eq))
        position = 0
        for equal, run in groupby(map(eq, keys, keys[period:])):
            length = len(list(run))
            if equal and (length + period) // period >= 2:
                candidates.append((length // period * period, position, period, position + length + period))
            position += length
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    taken = bytearray(n)
    runs = []
    for _, region, period, end in candidates:
        # the units' phase: the first start from which the units are self-contained
        for start in range(region, region + period):
            copies = (end - start) // period
            clash = taken.find(1, start, start + period * copies)
            if clash >= 0:  # the run's tail overlaps a run taken before: keep its head, if any
                copies = (clash - start) // period
            if copies >= 2 and _self_contained(layers, index_of, start, period, copies):
                taken[start:start + period * copies] = b"\x01" * (period * copies)
                runs.append((start, period, copies))
                break
    runs.sort()
    names = {node.name for node in graph.nodes}
    prefixes = {".".join(node.name.split(".")[:k]) for node in graph.nodes for k in range(1, node.name.count(".") + 1)}
    from archcalc.spec import stem_of

    mapping: dict[str, str] = {}
    number = 0
    for start, period, copies in runs:
        locals_ = []
        counts: Counter = Counter()
        for node in layers[start:start + period]:
            stem = stem_of(node.type)
            counts[stem] += 1
            locals_.append(f"{stem}{counts[stem]}")
        while True:
            number += 1
            stage = f"stage{number}"
            fresh = [f"{stage}.{unit}.{local}" for unit in range(copies) for local in locals_]
            used = {stage, *(f"{stage}.{unit}" for unit in range(copies))}
            if not (used & names or used & prefixes or set(fresh) & names):
                break
        for offset, new in enumerate(fresh):
            mapping[layers[start + offset].name] = new
    return mapping


def _self_contained(layers: tuple[Node, ...], index_of: Mapping[str, int], start: int, period: int, copies: int) -> bool:
    """True if each unit of the run reads only its own layers and the layer just before it."""
    for unit in range(copies):
        first = start + unit * period
        for index in range(first, first + period):
            if any(index_of[ref] < first - 1 for ref in layers[index].inputs):
                return False
    return True


def renamed(graph: Graph, mapping: Mapping[str, str]) -> Graph:
    """The graph with layers renamed by ``mapping`` (old -> new), inputs following; scopes dropped."""
    if not mapping:
        return graph
    from archcalc.spec import MAX_LAYERS, from_dict

    spec = flat_spec(graph)
    for layer, node in zip(spec["layers"], graph.nodes[1:]):
        layer["name"] = mapping.get(node.name, node.name)
        if "inputs" in layer:
            layer["inputs"] = [mapping.get(ref, ref) for ref in layer["inputs"]]
    return from_dict(spec, graph.source or "<renamed>", max_layers=max(MAX_LAYERS, len(graph.nodes)))


# --- JSON text --------------------------------------------------------------------------------


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def _fill(value: Any, column: int, width: int = LINE_WIDTH - 1) -> str:
    """``value`` as JSON starting at ``column``: on one line if it fits in ``width``; else its
    entries filled onto lines as words in a paragraph, each continuation line aligned after the
    opening bracket (an entry too long for a line is filled the same way)."""
    text = _compact(value)
    if column + len(text) <= width or not isinstance(value, (Mapping, list)) or not value:
        return text
    opening, closing = ("{", "}") if isinstance(value, Mapping) else ("[", "]")
    entries = ([(json.dumps(str(k), ensure_ascii=False) + ": ", v) for k, v in value.items()]
               if isinstance(value, Mapping) else [("", v) for v in value])
    indent = column + 1
    out, current = opening, indent
    for index, (prefix, item) in enumerate(entries):
        tail = closing if index == len(entries) - 1 else ","
        separator = "" if index == 0 else " "
        if index and current + len(separator) + len(prefix) + len(_compact(item)) + len(tail) > width:
            out += "\n" + " " * indent
            current, separator = indent, ""
        start = current + len(separator) + len(prefix)
        rendered = _fill(item, start, width - len(tail))
        out += separator + prefix + rendered + tail
        current = (len(rendered.rsplit("\n", 1)[1]) if "\n" in rendered else start + len(rendered)) + len(tail)
    return out


def _broken(value: list[Any], indent: int) -> str:
    """A list with one entry per line (each filled from ``indent + 2``)."""
    pad = " " * (indent + 2)
    return "[\n" + ",\n".join(pad + _fill(item, indent + 2) for item in value) + "\n" + " " * indent + "]"


def dump_spec(source: Graph | Mapping[str, Any]) -> str:
    """JSON text of a spec (or of :func:`readable_spec` of a graph), one layer per line where it fits.

    The spec, ``blocks``, each block and each ``layers`` list are broken over lines, one layer
    (or instance) a line; one longer than ``LINE_WIDTH`` characters continues on the next lines,
    aligned after its opening brace (only a name or other string longer than a line makes a
    line longer). The text ends with a newline; ``archcalc.spec.from_json`` reads it.
    """
    spec = readable_spec(source) if isinstance(source, Graph) else source
    entries = []
    for key, value in spec.items():
        head = f"  {json.dumps(key, ensure_ascii=False)}: "
        if key == "blocks" and isinstance(value, Mapping) and value:
            blocks = []
            for name, block in value.items():
                block_head = f"    {json.dumps(name, ensure_ascii=False)}: "
                if not isinstance(block, Mapping) or not block:
                    blocks.append(block_head + _fill(block, len(block_head)))
                    continue
                fields = []
                for field_key, field_value in block.items():
                    field_head = f"      {json.dumps(field_key, ensure_ascii=False)}: "
                    layers = field_key == "layers" and isinstance(field_value, list) and field_value
                    fields.append(field_head + (_broken(field_value, 6) if layers else _fill(field_value, len(field_head))))
                blocks.append(block_head + "{\n" + ",\n".join(fields) + "\n    }")
            text = "{\n" + ",\n".join(blocks) + "\n  }"
        elif key == "layers" and isinstance(value, list) and value:
            text = _broken(value, 2)
        else:
            text = _fill(value, len(head))
        entries.append(head + text)
    return "{\n" + ",\n".join(entries) + "\n}\n"
