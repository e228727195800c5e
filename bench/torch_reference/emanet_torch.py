"""The official EMANet architecture in PyTorch, with the official parameter names.

Written from the published description of the authors' code (see
`shared/EMANET.md` and issue 7), not copied from it. Its only purpose is to
produce state dicts with the official key names and reference outputs for the
converter's parity tests and for benchmarks:

    extractor.0.{0,3,6}.weight      deep stem convs (extractor.0.{1,4}.* BNs)
    extractor.1.*                   BN after the stem
    extractor.4..7.N.*              stages 1..4 (conv{1,2,3}, bn{1,2,3}, 0.downsample.{0,1})
    fc0.{conv,bn}.*                 3x3 conv-BN-ReLU, 2048 -> 512
    emau.mu (1, C, K), emau.conv1.{weight,bias}, emau.conv2.{0.weight,1.*}
    fc1.0.{conv,bn}.*               3x3 conv-BN-ReLU, 512 -> 256 (fc1.1 = Dropout2d)
    fc2.{weight,bias}               1x1 classifier

`ResNet` alone gives the ImageNet backbone layouts: `conv1.{0,3,6}` / `bn1` /
`layer1..4` / `fc` for the deep stem, torchvision's `conv1` / `bn1` /
`layer1..4` / `fc` for the standard stem.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

BLOCK_COUNTS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BN_EPSILON = 1e-5
EM_EPSILON = 1e-6


class Bottleneck(nn.Module):
    """1x1, 3x3 (stride and dilation here, padding = dilation), 1x1; shortcut."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1, dilation=1, downsample=None):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPSILON)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(width, eps=BN_EPSILON)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels, eps=BN_EPSILON)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + shortcut)


class ResNet(nn.Module):
    """ResNet v1.5 with the deep ("ResNet-C") or standard stem and a dilated tail.

    Output stride 8: stage 3 at dilation 2, stage 4 at dilation 4 with
    multi-grid (1, 2, 4). Output stride 16: stage 4 at dilation 2 with
    multi-grid. The first block of a dilated stage runs at half its dilation.
    """

    def __init__(
        self, depth=50, *, block_counts=None, stem="deep", output_stride=32, num_classes=1000
    ):
        super().__init__()
        blocks = tuple(block_counts or BLOCK_COUNTS[depth])
        if stem == "deep":
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(64, eps=BN_EPSILON),
                nn.ReLU(inplace=True),
                nn.Conv2d(64, 64, 3, padding=1, bias=False),
                nn.BatchNorm2d(64, eps=BN_EPSILON),
                nn.ReLU(inplace=True),
                nn.Conv2d(64, 128, 3, padding=1, bias=False),
            )
            self.in_channels = 128
        elif stem == "standard":
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.in_channels = 64
        else:
            raise ValueError(f"unknown stem {stem!r}")
        self.bn1 = nn.BatchNorm2d(self.in_channels, eps=BN_EPSILON)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # (stride, dilation, multi-grid) of stages 2..4.
        tail = {
            32: [(2, 1, None), (2, 1, None), (2, 1, None)],
            16: [(2, 1, None), (2, 1, None), (1, 2, (1, 2, 4))],
            8: [(2, 1, None), (1, 2, None), (1, 4, (1, 2, 4))],
        }[output_stride]
        self.layer1 = self._make_stage(64, blocks[0], 1, 1, None)
        self.layer2 = self._make_stage(128, blocks[1], *tail[0])
        self.layer3 = self._make_stage(256, blocks[2], *tail[1])
        self.layer4 = self._make_stage(512, blocks[3], *tail[2])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    def _make_stage(self, width, num_blocks, stride, dilation, multi_grid):
        out_channels = width * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=BN_EPSILON),
            )
        grid = multi_grid or (1,) * num_blocks
        layers = [
            Bottleneck(self.in_channels, width, stride, max(1, dilation // 2), downsample)
        ]
        self.in_channels = out_channels
        for index in range(1, num_blocks):
            layers.append(Bottleneck(out_channels, width, dilation=dilation * grid[index]))
        return nn.Sequential(*layers)

    def features(self, x):
        """Stage 4's output (the trunk a segmenter uses)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


class ConvBNReLU(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPSILON)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _l2_normalize(tensor, dim):
    return tensor / (EM_EPSILON + tensor.norm(dim=dim, keepdim=True))


class EMAU(nn.Module):
    """EMA unit: bases `mu` (1, C, K) as a buffer, EM without gradient."""

    def __init__(self, channels, num_bases, num_iterations=3):
        super().__init__()
        self.num_iterations = num_iterations
        mu = torch.empty(1, channels, num_bases).normal_(0, math.sqrt(2.0 / num_bases))
        self.register_buffer("mu", _l2_normalize(mu, dim=1))
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.conv2 = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels, eps=BN_EPSILON),
        )

    def forward(self, x):
        residual = x
        x = self.conv1(x)
        batch, channels, height, width = x.shape
        x = x.view(batch, channels, height * width)  # (B, C, N)
        mu = self.mu.repeat(batch, 1, 1)  # (B, C, K)
        with torch.no_grad():
            for _ in range(self.num_iterations):
                z = F.softmax(torch.bmm(x.permute(0, 2, 1), mu), dim=2)  # (B, N, K)
                z_normalized = z / (EM_EPSILON + z.sum(dim=1, keepdim=True))
                mu = _l2_normalize(torch.bmm(x, z_normalized), dim=1)
        x = torch.bmm(mu, z.permute(0, 2, 1)).view(batch, channels, height, width)
        x = self.conv2(F.relu(x))
        return F.relu(x + residual), mu


class EMANet(nn.Module):
    """Deep-stem dilated ResNet, fc0, EMAU, fc1 (+ Dropout2d), fc2, bilinear upsample."""

    def __init__(
        self,
        num_classes=21,
        depth=101,
        *,
        block_counts=None,
        output_stride=8,
        head_channels=512,
        classifier_channels=256,
        num_bases=64,
        num_iterations=3,
    ):
        super().__init__()
        backbone = ResNet(
            depth, block_counts=block_counts, stem="deep", output_stride=output_stride
        )
        self.extractor = nn.Sequential(
            backbone.conv1,
            backbone.bn1,
            backbone.relu,
            backbone.maxpool,
            backbone.layer1,
            backbone.layer2,
            backbone.layer3,
            backbone.layer4,
        )
        self.fc0 = ConvBNReLU(512 * Bottleneck.expansion, head_channels, 3)
        self.emau = EMAU(head_channels, num_bases, num_iterations)
        self.fc1 = nn.Sequential(
            ConvBNReLU(head_channels, classifier_channels, 3), nn.Dropout2d(p=0.1)
        )
        self.fc2 = nn.Conv2d(classifier_channels, num_classes, 1)

    def forward(self, image):
        x = self.fc0(self.extractor(image))
        x, _ = self.emau(x)
        x = self.fc2(self.fc1(x))
        return F.interpolate(x, size=image.shape[2:], mode="bilinear", align_corners=True)


def randomize_(module, seed=0):
    """Random weights that make a parity test meaningful.

    Freshly initialised BNs are the identity in eval mode, which would let a
    converter that drops or swaps BN statistics pass; here every BN gets
    random affine parameters and running statistics, and every conv a
    He-normal kernel (PyTorch's default is 3x smaller in variance and would
    shrink the logits towards zero). Scales stay moderate so a 100-layer
    network keeps activations, and logits, of order one.
    """
    generator = torch.Generator().manual_seed(seed)

    def uniform(shape, low, high):
        return low + (high - low) * torch.rand(shape, generator=generator)

    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d):
                fan_in = layer.weight[0].numel()
                std = math.sqrt(2.0 / fan_in)
                layer.weight.copy_(std * torch.randn(layer.weight.shape, generator=generator))
                if layer.bias is not None:
                    layer.bias.copy_(uniform(layer.bias.shape, -0.1, 0.1))
            elif isinstance(layer, nn.BatchNorm2d):
                shape = layer.weight.shape
                layer.weight.copy_(uniform(shape, 0.5, 1.0))
                layer.bias.copy_(uniform(shape, -0.2, 0.2))
                layer.running_mean.copy_(uniform(shape, -0.2, 0.2))
                layer.running_var.copy_(uniform(shape, 0.5, 2.0))
                layer.num_batches_tracked.fill_(7)
    return module


def official_checkpoint(model, step=0):
    """The dict the official training script saves: `{"net": state_dict, "step": step}`."""
    return {"net": model.state_dict(), "step": step}
