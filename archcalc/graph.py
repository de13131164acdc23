"""The graph: frozen nodes in topological order, with references and cycles checked."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from archcalc.errors import SpecError
from archcalc.ops import Shape
from archcalc.ops.base import did_you_mean

#: Name of the graph's input node, which every graph has.
INPUT = "input"


@dataclass(frozen=True, slots=True)
class Node:
    """One layer: a registered op type, its validated attributes and the nodes it reads.

    ``scope`` is the chain of block instances the node was expanded from (outermost first),
    e.g. ``("inception3a", "branch2")``; ``where`` locates it in the spec for messages.
    """

    name: str
    type: str
    attrs: Mapping[str, Any]
    inputs: tuple[str, ...]
    scope: tuple[str, ...] = ()
    where: str = field(default="", compare=False)

    def label(self) -> str:
        """Location for messages: ``layers[3] (name="conv2", type="conv")``."""
        return f'{self.where} (name="{self.name}", type="{self.type}")' if self.where else f'layer "{self.name}"'


@dataclass(frozen=True, slots=True)
class Reference:
    """A published figure for the whole network, with its citation (a spec's ``"reference"``).

    ``top1`` is the ImageNet top-1 accuracy in percent (0 to 100) that ``source`` states for this
    architecture, e.g. torchvision's documented accuracy of its weights.
    """

    top1: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        """The spec's form: ``{"top1": ..., "source": ...}``."""
        return {"top1": self.top1, "source": self.source}


@dataclass(frozen=True, slots=True)
class Graph:
    """A network: name, input shape and nodes in topological order (the input node first).

    ``warnings`` holds doubts about the spec that are not errors, one line each (an input
    shape that looks channels-last); the CLI prints them and the JSON report carries them.
    """

    name: str
    input_shape: Shape
    nodes: tuple[Node, ...]
    description: str = ""
    source: str = field(default="", compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    #: A cited figure for the network (its top-1 accuracy), or None.
    reference: Reference | None = None

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise SpecError(f"{node.label()}: name is used twice")
            for ref in node.inputs:
                if ref not in seen:
                    raise SpecError(f"{node.label()}: input {ref!r} is not an earlier layer")
            seen.add(node.name)
        self._check_blocks(seen)

    def _check_blocks(self, names: set[str]) -> None:
        """A block instance's layers are consecutive, and its name is no layer's: otherwise
        folding (``--depth``) and ``explain`` could not tell which one a name means."""
        prefix = f"spec '{self.source}': " if self.source else ""
        closed: set[tuple[str, ...]] = set()
        current: tuple[str, ...] = ()
        for node in self.nodes[1:]:
            scope = node.scope
            if scope != current:
                shared = 0
                while shared < min(len(scope), len(current)) and scope[shared] == current[shared]:
                    shared += 1
                closed.update(current[:k] for k in range(shared + 1, len(current) + 1))
                for k in range(shared + 1, len(scope) + 1):
                    block = scope[:k]
                    if block in closed:
                        raise SpecError(f"{prefix}{node.label()}: block {'.'.join(block)!r} appears again after other "
                                        "layers; a block's layers must be consecutive (give the second one its own name)")
                    if ".".join(block) in names:
                        raise SpecError(f"{prefix}{node.label()}: {'.'.join(block)!r} names both a layer and a block")
                current = scope

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, name: str) -> Node:
        """The node of that name; SpecError with a did-you-mean if there is none."""
        for node in self.nodes:
            if node.name == name:
                return node
        # a block instance's name (one of the scopes a node was expanded in): say so, and name its layers
        members = [n.name for n in self.nodes if any(".".join(n.scope[:k]) == name for k in range(1, len(n.scope) + 1))]
        if members:
            count = f"{len(members)} layers ({members[0]} .. {members[-1]})" if len(members) > 1 else f"1 layer ({members[0]})"
            raise SpecError(
                f"model '{self.name}': {name!r} is a block of {count}, not one layer; "
                f"give one of them, e.g. {members[-1]!r} (the block's output)"
            )
        raise SpecError(f"model '{self.name}' has no layer {name!r}{did_you_mean(name, [n.name for n in self.nodes])}")

    def to_dict(self) -> dict[str, Any]:
        """The expanded spec: every layer with its name, attributes and explicit inputs."""
        layers = []
        for node in self.nodes[1:]:
            layer: dict[str, Any] = {"name": node.name, "type": node.type}
            layer.update({k: _plain(v) for k, v in node.attrs.items()})
            layer["inputs"] = list(node.inputs)
            if node.scope:
                layer["scope"] = list(node.scope)
            layers.append(layer)
        spec: dict[str, Any] = {"name": self.name}
        if self.description:
            spec["description"] = self.description
        if self.reference is not None:
            spec["reference"] = self.reference.to_dict()
        spec["input"] = list(self.input_shape)
        spec["layers"] = layers
        return spec

    def to_json(self, indent: int | None = 1) -> str:
        """The expanded spec as JSON; ``archcalc.load`` reads it back to an equal graph."""
        return json.dumps(self.to_dict(), indent=indent)


def _plain(value: Any) -> Any:
    """Tuples (nested) as lists, for JSON."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
