"""``archcalc explain``: the arithmetic behind every number of one layer, as a student writes it.

Each line is ``(quantity, text)`` where the text ends in ``= value`` and the value is the
analyzer's own figure, so a line can be checked by evaluating its arithmetic once the
thousands separators are removed. Numbers of 1,000 and more are grouped by thousands, except
inside shape tuples such as ``(4096,)``, and no step repeats the one before it.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from archcalc import formulas
from archcalc.graph import Graph
from archcalc.loading import load
from archcalc.ops import GLOBAL, POINTWISE, Layer, format_shape, get_op
from archcalc.ops.base import AXIS_NAMES
from archcalc.passes import analyze
from archcalc.report import RESOLUTION_MARK, Analysis


def explain(model: Any, layer: str, batch: int = 1, dtype: str = "float32") -> list[tuple[str, str]]:
    """The arithmetic of one layer's output shape, params, MACs, memory and receptive field.

    Args:
        model: anything :func:`archcalc.load` takes.
        layer: the layer's name.
        batch: samples per batch (activations and MACs scale with it).
        dtype: value type for the byte counts.
    """
    graph: Graph = load(model)
    return explain_layer(graph, analysis=analyze(graph, batch=batch, dtype=dtype), layer=layer, group_digits=True)


def explain_layer(graph: Graph, analysis: Analysis, layer: str, group_digits: bool = False) -> list[tuple[str, str]]:
    """:func:`explain` from an analysis already made (grading explains many layers of one).

    With ``group_digits`` numbers of 1,000 and more are grouped by thousands, as :func:`explain`
    does; either way no step repeats the one before it (see :func:`readable`).

    Raises:
        ArchcalcError: the layer does not exist, or a figure has more than 4,000 digits.
    """
    from archcalc.render.format import check_printable

    check_printable(analysis)  # a huge batch: one clear error rather than int-to-text's ValueError
    node = graph.node(layer)
    row = analysis.layer(node.name)
    batch, dtype = analysis.batch, analysis.dtype
    # the rules' view of the layer, rebuilt from the analysis: its attributes are the resolved ones
    resolved = Layer(row.attrs, tuple(analysis.layer(ref).output_shape for ref in node.inputs), row.output_shape)
    lines: list[tuple[str, str]] = []
    if not node.inputs:
        lines.append(("output shape", f"the network input {format_shape(row.output_shape)}"))
    else:
        op = get_op(node.type)
        dependence = _explain_size_dependence(op, node, resolved)
        lines.extend(dependence)
        # the dependence line gives the arithmetic at this size too: the op's own line of that quantity goes
        written = {quantity for quantity, _ in dependence}
        lines.extend(line for line in op.explain(resolved) if line[0] not in written)
        if not any(q in ("params", "weights") for q, _ in lines):
            lines.append(("params", f"0 ({node.type} has no parameters)" if not row.params else str(row.params)))
        if not any(q == "MACs" for q, _ in lines):
            lines.append(("MACs", f"0 ({node.type} multiplies nothing)"))
        per_sample = row.macs // batch
        if batch != 1 and per_sample:
            lines.append(("MACs for the batch", f"{per_sample} * {batch} = {row.macs}"))
        if row.macs:
            lines.append(("FLOPs", f"2 * MACs = 2 * {row.macs} = {row.flops}"))
        lines.extend(_explain_backward(op.backward_cost(resolved), row, batch))
        if any(q.startswith("other ops") for q, _ in lines):  # the op wrote its arithmetic (one sample)
            if batch != 1 and row.other_ops:
                lines.append(("other ops for the batch", f"{row.other_ops // batch} * {batch} = {row.other_ops}"))
        else:
            rule = op.other_ops_rule
            lines.append(("other ops", f"{row.other_ops} ({rule})" if row.other_ops and rule else str(row.other_ops)))
    dims = "*".join(map(str, row.output_shape)) + (f" * {batch}" if batch != 1 else "")
    lines.append(("activations", f"prod(output shape){' * batch' if batch != 1 else ''} = {dims} = {row.activations}"))
    size = formulas.DTYPE_BYTES[dtype]
    note = "" if row.stores_output else "; in place or a view: not counted in the forward total"
    lines.append(("activation bytes", f"{row.activations} * {size} = {row.activation_bytes} ({dtype}, {size} bytes a value{note})"))
    lines.extend(_explain_field(analysis, node, resolved))
    if analysis.layer(node.name).receptive_field.resolution_dependent:
        lines.append(("receptive field", _field_dependence(graph, analysis, node.name)))
    return [(quantity, readable(text, group_digits)) for quantity, text in lines]


def _explain_backward(cost: Any, row: Any, batch: int) -> list[tuple[str, str]]:
    """The backward's MACs of an op that multiplies (its rule: "backward" in its docstring)."""
    if not cost.macs:
        return []
    rule = "the forward's MACs again" if cost.input_grad_macs == cost.weight_grad_macs == row.macs // batch else "its rule"

    def text(per_sample: int) -> str:
        return f"{per_sample} ({rule})" if batch == 1 else f"{per_sample} * {batch} = {per_sample * batch} ({rule})"

    if row.figure("input_grad_macs"):
        input_text = text(cost.input_grad_macs)
    else:
        input_text = (f"0: no input depends on a learned parameter, so backward skips it as frameworks do "
                      f"(it would cost {rule}: {cost.input_grad_macs * batch})")
    weight_text = text(cost.weight_grad_macs) if row.figure("weight_grad_macs") else "0 (no learned parameters)"
    return [("input-gradient MACs", input_text), ("weight-gradient MACs", weight_text)]


#: A parenthesised group with a comma in it: a shape tuple or a remark, whose numbers stay as written.
_COMMA_GROUP = re.compile(r"\([^()]*,[^()]*\)")
#: A run of 4+ digits that is a whole number: not part of a name, a decimal or a grouped number.
_LONG_NUMBER = re.compile(r"(?<![\w.,])(?<!\de-)(?<!\de\+)\d{4,}(?![\w]|\.\d|,\d)")


def readable(text: str, group_digits: bool = True) -> str:
    """``text`` with each number of 1,000 or more grouped by thousands and each "x = x" step dropped.

    ``readable("4096 * 2 = 8192; (4096,) = (4096,)") == "4,096 * 2 = 8,192; (4096,)"``.
    Numbers inside a parenthesised group with a comma (a shape tuple) are left as they are.
    """
    clauses = []
    for clause in text.split("; "):
        steps: list[str] = []
        for step in clause.split(" = "):
            if not steps or step.strip() != steps[-1].strip():
                steps.append(step)
        clauses.append(" = ".join(steps))
    text = "; ".join(clauses)
    if not group_digits:
        return text
    protected = [(m.start(), m.end()) for m in _COMMA_GROUP.finditer(text)]

    def group(match: re.Match[str]) -> str:
        if any(start <= match.start() < end for start, end in protected):
            return match.group()
        return f"{int(match.group()):,}"

    return _LONG_NUMBER.sub(group, text)


def _explain_size_dependence(op: Any, node: Any, layer: Layer) -> list[tuple[str, str]]:
    """``padding (height)``: how an attribute was resolved from this input size, and what another
    size would make it (:meth:`archcalc.ops.base.Op.size_dependence`)."""
    names = AXIS_NAMES.get(len(layer.in_shape) - 1, ())
    return [
        (f"{d.attribute} ({names[d.axis] if d.axis < len(names) else d.axis})",
         f"{d.text} (resolution-dependent: {RESOLUTION_MARK} in the report)")
        for d in op.size_dependence(node.attrs, layer)
    ]


def _field_dependence(graph: Graph, analysis: Analysis, name: str) -> str:
    """Why a receptive field holds for this input size only: the nearest layer at or above ``name``
    whose size-dependent attributes move the field."""
    rows = {row.name: row for row in analysis.layers}
    nodes = {node.name: node for node in graph}
    queue, seen = [name], {name}
    for current in queue:  # breadth first: the nearest such layer
        node, row = nodes[current], rows[current]
        if node.inputs and row.resolution_dependent:
            layer = Layer(row.attrs, tuple(rows[ref].output_shape for ref in node.inputs), row.output_shape)
            moved = [d.attribute for d in get_op(node.type).size_dependence(node.attrs, layer) if d.moves_field]
            if moved:
                where = "this layer's" if current == name else f"{current}'s"
                return (f"its padding and centre hold for this input size only ({RESOLUTION_MARK}): they follow from "
                        f"{where} {moved[0]}, resolved from its input size")
        for ref in node.inputs:
            if ref not in seen and rows[ref].receptive_field.resolution_dependent:
                seen.add(ref)
                queue.append(ref)
    return f"its padding and centre hold for this input size only ({RESOLUTION_MARK})"


def _explain_field(analysis: Analysis, node: Any, layer: Layer) -> list[tuple[str, str]]:
    field = analysis.layer(node.name).receptive_field
    if not node.inputs:
        return [("receptive field", "each input value sees itself: size 1, jump 1")]
    if field.is_global:
        bound = "" if field.exact else " (an upper bound: archcalc could not follow every layer's field exactly)"
        return [("receptive field", f"global: every output sees the whole input{bound}")]
    op = get_op(node.type)
    sources = [analysis.layer(ref).receptive_field for ref in node.inputs[: op.field_inputs]]
    window = op.window(layer)
    lines = []
    if len(sources) > 1:
        sizes = ", ".join("x".join(map(str, s.size)) for s in sources)
        smallest = "x".join(map(str, field.size_min))
        misaligned = "" if field.aligned else "; the inputs' centres differ"
        lines.append(("receptive field", f"largest over the {len(sources)} inputs ({sizes}); smallest {smallest}{misaligned}"))
    if window in (POINTWISE, GLOBAL):
        lines.append(("receptive field", f"unchanged by {node.type}: size {'x'.join(map(str, field.size))}"))
        return lines
    generic = ("receptive field", f"{field.text()}, per input axis, following what each axis of the tensor holds")
    if getattr(op, "axis_map", None):  # a layout op moves axes: no window arithmetic
        return [*lines, generic]
    source = max(sources, key=lambda s: s.size)
    axis_names = AXIS_NAMES[len(analysis.input_shape) - 1]
    dilations = window.input_dilation or (1,) * len(window.kernel)
    for component, (k, s, d, pad, input_dilation) in enumerate(
        zip(window.kernel, window.stride, window.dilation, window.padding, dilations), start=1
    ):
        # the window's component along tensor axis `component` acts on the input axis held there
        axis = source.axes[component] if source.axes else component - 1
        if not isinstance(axis, int):
            continue
        before, after = source.path_max[axis], field.path_max[axis]
        if formulas.receptive_field_step(before, k, s, d, pad[0], input_dilation) != after:
            return [*lines, generic]  # not this window's step alone (an axis taken whole): no arithmetic to write
        span = formulas.effective_kernel(k, d)
        jump_in, steps = before.jump, ""
        if input_dilation != 1:  # the window steps over the zero-inserted input, jump_in/D apart
            jump_in = formulas.exact(Fraction(before.jump) / input_dilation)
            steps = f"step = jump_in / D = {_factor(before.jump)}/{input_dilation} = {jump_in}; "
        name, factor = ("step" if steps else "jump_in"), _factor(jump_in)
        lines.append((
            f"receptive field ({axis_names[axis]})",
            f"{steps}r = r_in + (k'-1)*{name} = {before.size} + ({span}-1)*{factor} = {after.size}; "
            f"jump = {name} * s = {factor}*{_factor(s)} = {after.jump}; "
            f"padding = p_in + p*{name} = {before.padding} + {_factor(pad[0])}*{factor} = {after.padding}; "
            f"centre = (r-1)/2 - padding = {after.centre}",
        ))
    if not field.exact:
        lines.append(("receptive field", "an upper bound (?): a transposed conv or upsampling after other windows spans "
                      "the fields between its real taps too, and an axis archcalc could not follow is taken whole"))
    return lines


def _factor(value: Any) -> str:
    """A number as a factor in written arithmetic: a fraction in parentheses, ``(1/2)``."""
    return f"({value})" if isinstance(value, Fraction) else str(value)


#: The figures each line of :func:`explain_layer` works out, by the first word(s) of its quantity:
#: ``output height``, ``output shape`` -> output_shape; ``weights`` -> params and weights only...
_FIGURES_BY_QUANTITY = (
    ("output", ("output_shape",)),
    ("weights", ("params", "params_weights_only")),
    ("params", ("params",)),
    ("buffers", ("buffers",)),
    ("MACs", ("macs",)),
    ("FLOPs", ("flops",)),
    ("other ops", ("other_ops",)),
    ("activation bytes", ("activation_bytes",)),
    ("activations", ("activations",)),
)


def lines_for(lines: list[tuple[str, str]], figure: str) -> list[tuple[str, str]]:
    """The lines of :func:`explain_layer`'s output that work out ``figure`` (a name from
    :mod:`archcalc.figures`), e.g. every ``output ...`` line for ``output_shape``."""
    picked = []
    for quantity, text in lines:
        for start, figures in _FIGURES_BY_QUANTITY:
            if quantity.startswith(start):
                if figure in figures:
                    picked.append((quantity, text))
                break
    return picked
