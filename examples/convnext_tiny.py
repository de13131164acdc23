"""ConvNeXt-T (Liu et al. 2022) as torchvision.models.convnext_tiny builds it, 3x224x224.

Written from the README by a new user: channels-first LayerNorms at the stem, the downsampling
layers and the head; in each block a 7x7 depthwise conv, then channels-last (permute)
LayerNorm -> Linear 4C -> GELU -> Linear C, back to channels-first, the layer scale (gamma,
1e-6) and stochastic depth rising linearly to 0.1. `archcalc report examples/convnext_tiny.py`
gives torchvision's 28,589,128 params and 4,455,531,264 MACs (its 4.46 GFLOPS).
"""

from archcalc import Net

model = Net("convnext_tiny", input=(3, 224, 224))
model.conv(96, 4, stride=4, name="stem")
x = model.layernorm(eps=1e-6, name="stem_ln")

depths = [3, 3, 9, 3]
dims = [96, 192, 384, 768]
total = sum(depths)
bid = 0
for si, (d, dim) in enumerate(zip(depths, dims)):
    if si > 0:
        with model.block(f"down{si}"):
            model.layernorm(eps=1e-6, name="ln", inputs=x)
            x = model.conv(dim, 2, stride=2, name="conv")
        x = f"down{si}"
    for b in range(d):
        p = 0.1 * bid / (total - 1)
        with model.block(f"stage{si}.{b}"):
            model.conv(dim, 7, padding=3, groups=dim, name="dwconv", inputs=x)
            model.permute([0, 2, 3, 1])
            model.layernorm(normalized_shape=[dim], eps=1e-6, name="ln")
            model.linear(4 * dim, name="pw1")
            model.gelu()
            model.linear(dim, name="pw2")
            model.permute([0, 3, 1, 2])
            model.scale(init=1e-6, name="layer_scale")
            model.stochastic_depth(p, "row", name="sd")
            model.add(f"stage{si}.{b}.sd", x, name="add")
        x = f"stage{si}.{b}"
        bid += 1

model.adaptive_avgpool(1, name="avgpool", inputs=x)
model.layernorm(eps=1e-6, name="head_ln")
model.flatten()
model.linear(1000, name="fc")
