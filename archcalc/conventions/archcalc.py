"""archcalc's own convention (the default): multiply-accumulates, as CONVENTIONS.md defines them."""

from __future__ import annotations

from archcalc.conventions import Convention, Rule

PRESET = Convention(
    name="archcalc",
    tool="archcalc's own rules (CONVENTIONS.md)",
    unit="MACs",
    summary="multiply-accumulates of every op that multiplies (conv, transposed conv, linear, ...), bias adds and "
            "element-wise work apart as other ops; FLOPs = 2 x MACs",
    rules={},
    default=Rule("macs", backward="needs_input_grad * input_grad_macs + weight_grad_macs"),
)
