"""PyTorch as an independent oracle: build a torch model from an archcalc graph.

Only tests import this. Each op type maps to torch's own layer, so shapes, parameter counts
and receptive fields measured here come from torch, not from archcalc's rules.
"""

from __future__ import annotations

# A plain import: without torch this module fails to import with ImportError, and the tests'
# pytest.importorskip("tests.torch_oracle") skip with that reason (pip install torch==2.14.1 torchvision==0.29.1,
# or torch==2.13.0 alone: a CPU build, without the torchvision tests).
import torch

from archcalc.graph import Graph
from archcalc.ops import get_op
from archcalc.passes import infer_shapes

nn = torch.nn
F = torch.nn.functional


def build_module(op_type, layer, avg_for_max=False):
    """A torch module for one resolved layer (the op's own :meth:`torch_module`), called with the
    layer's inputs. ``avg_for_max`` swaps each max-pool for its ``torch_field_module``, a sum or
    average over the same windows (gradient-based receptive-field measurements: every value in a
    window then matters)."""
    op = get_op(op_type)
    if avg_for_max and hasattr(op, "torch_field_module"):
        return op.torch_field_module(layer)
    return op.torch_module(layer)


class TorchNet(nn.Module):
    """The graph in torch; ``forward`` returns every node's output by name."""

    def __init__(self, graph: Graph, avg_for_max: bool = False):
        super().__init__()
        self.graph = graph
        layers = infer_shapes(graph)
        self.layers = nn.ModuleDict()
        for node in graph.nodes[1:]:
            self.layers[_key(node.name)] = build_module(node.type, layers[node.name], avg_for_max)

    def forward(self, x):
        outputs = {self.graph.nodes[0].name: x}
        for node in self.graph.nodes[1:]:
            outputs[node.name] = self.layers[_key(node.name)](*(outputs[ref] for ref in node.inputs))
        return outputs


def torch_macs(module, inputs):
    """Multiply-accumulates torch's FlopCounterMode counts for one forward call (its FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def _key(name: str) -> str:
    return name.replace(".", "/")


def layer_param_count(net: TorchNet, name: str) -> tuple[int, int]:
    """(parameters, buffers) of one layer as PyTorch counts them: ``parameters()``, and the
    saved buffers but batchnorm's step counter (an int64 scalar, no statistic)."""
    module = net.layers[_key(name)]
    params = sum(p.numel() for p in module.parameters())
    buffers = sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))
    return params, buffers


def measured_fields(graph: Graph, names, batch_unit=None):
    """Per node, the input interval [first, last] per axis that the centre position depends on.

    Weights are positive and max-pools become average pools of the same window, so no
    gradient cancels or is routed away; the interval is where the input gradient is non-zero.
    """
    torch.manual_seed(0)
    net = TorchNet(graph, avg_for_max=True).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.rand_like(p) + 0.1)
    # small positive inputs: inside every activation's non-flat part (a ReLU's positive side, a
    # HardTanh's [min, max] range), so the gradient reaches every input the unit depends on
    x = torch.full((1, *graph.input_shape), 1e-2, dtype=torch.float64, requires_grad=True)
    outputs = net(x)
    for out in outputs.values():  # see _contiguous_grad
        if out.requires_grad:
            out.register_hook(_contiguous_grad)
    holdings = _axis_holdings(graph)
    n_spatial = len(graph.input_shape) - 1
    result = {}
    for name in names:
        out = outputs[name]
        index, centre = _probe(tuple(out.shape[1:]), holdings[name], n_spatial)
        x.grad = None
        # all channels at one position (a concat's channels come from different branches),
        # unequally weighted so that softmax's sum to 1 does not cancel the gradient
        channels = out[(0, *index)]
        weights = torch.arange(1, channels.numel() + 1, dtype=channels.dtype).reshape(channels.shape)
        unit = (channels * weights).sum()
        unit.backward(retain_graph=True)
        nonzero = x.grad[0].abs().sum(0).nonzero()
        result[name] = (centre, tuple((int(nonzero[:, a].min()), int(nonzero[:, a].max())) for a in range(nonzero.shape[1])))
    return result


def _contiguous_grad(grad):
    """The same gradient in contiguous memory. torch 2.13's CPU BatchNorm2d backward in eval
    misreads a non-contiguous output gradient of a batch of 1 (a BatchNorm2d whose output is
    reshaped and permuted: torch.autograd.gradcheck fails), and the oracle must not inherit it."""
    return None if grad is None else grad.contiguous()


def _axis_holdings(graph: Graph) -> dict:
    """Per node, what each output axis holds as archcalc's receptive-field pass reports it (an
    input spatial axis, None, or a merged tuple); () for a global field. It only says which unit
    to probe: the interval is torch's."""
    from archcalc.passes import receptive_fields

    return {name: field.axes for name, field in receptive_fields(graph, infer_shapes(graph)).items()}


def _probe(shape, axes, n_spatial):
    """The unit to probe in an output of ``shape`` (batch left out) and its index along each
    input spatial axis: the middle of each axis holding a spatial axis, all of each axis holding
    none (channels), position 0 of a merged axis (its unit 0 is position 0 of every axis merged);
    a global or unknown layout falls back to channels-first, or unit 0 of a flat output."""
    if len(axes) != len(shape):  # global: any unit sees everything
        spatial = shape[1:]
        if spatial:
            return (slice(None), *(n // 2 for n in spatial)), tuple(n // 2 for n in spatial)
        return (slice(0, 1),), (0,) * n_spatial
    index, centre = [], [0] * n_spatial
    for size, holds in zip(shape, axes):
        if holds is None:
            index.append(slice(None))
        elif isinstance(holds, int):
            index.append(size // 2)
            centre[holds] = size // 2
        else:
            index.append(0)
    if all(isinstance(i, slice) for i in index) and index:  # only channels: the first value
        index[0] = slice(0, 1)
    return tuple(index), tuple(centre)


def load_params(net: TorchNet, params: dict) -> None:
    """Copy an archcalc executor's parameters (``layer.name`` -> array) into the torch net."""
    with torch.no_grad():
        for key, value in params.items():
            node, name = key.rsplit(".", 1)
            module = net.layers[_key(node)]
            getattr(getattr(module, "inner", module), name).copy_(torch.as_tensor(value))


def run_torch(graph: Graph, params: dict, x, dy, training: bool = True, dtype=None):
    """Forward and backward in torch with archcalc's parameters.

    Returns (outputs by node name, input gradient, parameter gradients by archcalc name).
    """
    dtype = dtype or torch.float64
    net = TorchNet(graph).to(dtype)
    load_params(net, params)
    net.train(training)
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    outputs = net(xt)
    outputs[graph.nodes[-1].name].backward(torch.tensor(dy, dtype=dtype))
    grads = {}
    for key in params:
        node, name = key.rsplit(".", 1)
        module = net.layers[_key(node)]
        tensor = getattr(getattr(module, "inner", module), name)
        if isinstance(tensor, torch.nn.Parameter):
            grads[key] = tensor.grad.numpy()
    buffers = {}
    for key in params:
        node, name = key.rsplit(".", 1)
        module = net.layers[_key(node)]
        tensor = getattr(getattr(module, "inner", module), name)
        if not isinstance(tensor, torch.nn.Parameter):
            buffers[key] = tensor.detach().numpy()
    return {k: v.detach().numpy() for k, v in outputs.items()}, xt.grad.numpy(), grads, buffers
