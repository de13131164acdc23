"""Speed of the PyTorch import: `import torch`, tracing and mapping resnet50, the zoo's resnet50.

Run: python benchmarks/import_torch.py
Prints, from one run (these machines are noisy: read the ratios):

- ``import torch`` in a fresh process, less a bare ``python -c pass`` started the same way;
- ``from_torch`` of resnet50 (torch.fx trace, fake-tensor shapes, mapping, the
  builder's checks), in process, best of 3; torchvision's resnet50 when torchvision is
  importable, else the same network written out below (torchvision's Bottleneck layout, checked
  here to have torchvision's 25,557,032 parameters);
- analysing the zoo's resnet50 (``archcalc.analyze(archcalc.load("resnet50"))``), best of 5;
- the import's graph analysed, to show it is the zoo's figures.
"""

from __future__ import annotations

import subprocess
import sys

from analyze import best_of  # benchmarks/analyze.py, beside this script

import archcalc
from archcalc.importers.torch import from_torch


def process_time(code: str, repeat: int = 3) -> float:
    """Best wall time of a fresh ``python -c code``, in seconds."""
    return best_of(lambda: subprocess.run([sys.executable, "-c", code], check=True), repeat)


def resnet50():
    """torchvision's resnet50 (weights=None), or the same layout written out without torchvision."""
    import torch
    from torch import nn

    try:
        import torchvision
    except ImportError:
        pass
    else:
        return torchvision.models.resnet50(weights=None)

    class Bottleneck(nn.Module):
        def __init__(self, inplanes, planes, stride, downsample):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            out += identity
            return self.relu(out)

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes, stages = 64, []
            for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4))
                layers = [Bottleneck(inplanes, planes, stride, down)]
                layers += [Bottleneck(planes * 4, planes, 1, None) for _ in range(blocks - 1)]
                stages.append(nn.Sequential(*layers))
                inplanes = planes * 4
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    model = ResNet50()
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    return model


def main() -> None:
    bare = process_time("pass")
    with_torch = process_time("import torch")
    import_torch = with_torch - bare
    import torch

    torch.set_num_threads(1)
    model = resnet50().eval()
    source = "torchvision" if type(model).__module__.startswith("torchvision") else "written out"
    traced = best_of(lambda: from_torch(model, (3, 224, 224), name="resnet50"), 3)
    zoo = best_of(lambda: archcalc.analyze(archcalc.load("resnet50")), 5)
    imported = archcalc.analyze(from_torch(model, (3, 224, 224), name="resnet50"))
    reference = archcalc.analyze(archcalc.load("resnet50"))
    same = (imported.totals.params, imported.totals.macs) == (reference.totals.params, reference.totals.macs)
    print(f"python -c pass: {bare * 1e3:.0f} ms; python -c 'import torch': {with_torch * 1e3:.0f} ms "
          f"(import torch itself {import_torch * 1e3:.0f} ms)")
    print(f"from_torch(resnet50 [{source}]): {traced * 1e3:.0f} ms = {traced / import_torch:.2f}x import torch")
    print(f"zoo resnet50 load + analyze: {zoo * 1e3:.1f} ms; from_torch is {traced / zoo:.1f}x it, "
          f"import torch {import_torch / zoo:.1f}x it")
    print(f"import torch + from_torch, as a fresh `archcalc report` would pay: {(import_torch + traced) * 1e3:.0f} ms, "
          f"of which import torch {import_torch / (import_torch + traced):.0%}")
    print(f"imported figures equal the zoo's (params {imported.totals.params:,}, MACs {imported.totals.macs:,}): {same}")


if __name__ == "__main__":
    main()
