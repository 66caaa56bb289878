"""Building blocks of the two architectures.

DDL (2D, frames as a batch):
    MultiKernelBlock  parallel k x k convolutions (3, 5, 7), concat, BN + ReLU, then space-to-depth (encoder) or
                      depth-to-space (decoder) 2x2, then a 1x1 convolution to the block width (+ BN + ReLU);
                      in training computed branch by branch, without the concatenation and the rearrangement.
Dual-path (3D):
    DoubleConv3d      (Conv3d 3x3x3 -> BN3d -> ReLU) x 2
    Down3d            stride-2 Conv3d then DoubleConv3d
    Up3d              stride-2 ConvTranspose3d, optional skip concat, DoubleConv3d
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiKernelBlock(nn.Module):
    """One DDL encoder or decoder block; halves (encoder) or doubles (decoder) H and W.

    The parallel branches see the same input at three receptive fields; the 2x2 rearrangement moves resolution into
    channels (or back) without the information loss of pooling, and the 1x1 convolution mixes the result down to
    `out_ch`. In the decoder each branch makes 4x the channels so depth-to-space has 4 sub-pixels to spread.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernels: tuple[int, ...] = (3, 5, 7),
        decode: bool = False,
        last: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.decode = decode
        branch_ch = 4 * out_ch if decode else out_ch
        # no biases where BatchNorm follows: its shift makes them redundant (and their gradient is zero)
        self.branches = nn.ModuleList(nn.Conv2d(in_ch, branch_ch, k, padding=k // 2, bias=False) for k in kernels)
        self.norm = nn.BatchNorm2d(len(kernels) * branch_ch)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # space-to-depth multiplies channels by 4, depth-to-space divides them by 4
        mixed_ch = len(kernels) * branch_ch * 4 if not decode else len(kernels) * branch_ch // 4
        self.mix = nn.Conv2d(mixed_ch, out_ch, 1, bias=last)
        # the output block of the decoder ends in the sigmoid, so no BN/ReLU squeezing its range
        self.out_norm = nn.Identity() if last else nn.Sequential(nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_ch, H, W)
        if self.training:
            return self._branch_by_branch(x)
        # inference (scoring, calibration, export) as the layers read: an exported graph needs each kernel's shape
        x = torch.cat([branch(x) for branch in self.branches], dim=1)  # (B, K * branch_ch, H, W)
        x = self.drop(F.relu(self.norm(x), inplace=True))
        x = F.pixel_shuffle(x, 2) if self.decode else F.pixel_unshuffle(x, 2)
        return self.out_norm(self.mix(x))  # (B, out_ch, 2H or H/2, 2W or W/2)

    def _branch_by_branch(self, x: torch.Tensor) -> torch.Tensor:
        """The function of the layers (concat, BN + ReLU, 2x2 rearrangement, 1x1 mix), computed branch by branch,
        as training runs it: BatchNorm is per channel, so each branch's channels are normalised with their slice of
        it, and a 1x1 convolution after space-to-depth is a 2x2 convolution of stride 2 (before depth-to-space, a
        stride-2 transposed one), so each branch is mixed by its slice of that kernel and the parts are summed. The
        same values to float rounding, without the copies of the block's largest tensors that the concatenation
        and the rearrangement make, forward and backward (docs/results/throughput.md, "Object-mode training")."""
        if self.norm.track_running_stats:
            self.norm.num_batches_tracked.add_(1)
        kernel = self.mix_kernel()
        out, start = None, 0
        for branch in self.branches:
            y = reachable_conv(branch, x)  # (B, branch_ch, H, W)
            part = slice(start, start + y.shape[1])
            y = self.drop(F.relu(norm_channels(self.norm, y, part), inplace=True))
            if self.decode:
                y = F.conv_transpose2d(y, kernel[part], stride=2)  # (B, out_ch, 2H, 2W)
            else:
                y = F.conv2d(y, kernel[:, part], stride=2)  # (B, out_ch, H/2, W/2)
            out = y if out is None else out + y
            start = part.stop
        if self.mix.bias is not None:
            out = out + self.mix.bias.view(1, -1, 1, 1)
        return self.out_norm(out)  # (B, out_ch, 2H or H/2, 2W or W/2)

    def mix_kernel(self) -> torch.Tensor:
        """The 1x1 `mix` over the rearranged channels as a 2x2 kernel over the branches' channels: encoder
        (out_ch, K * branch_ch, 2, 2) for a stride-2 convolution (space-to-depth puts pixel (i, j) of channel c at
        4c + 2i + j); decoder (K * branch_ch, out_ch, 2, 2) for a stride-2 transposed convolution (depth-to-space
        puts channel 4c + 2i + j at pixel (i, j) of channel c)."""
        out_ch, mixed_ch = self.mix.weight.shape[:2]
        weight = self.mix.weight.reshape(out_ch, mixed_ch)
        if not self.decode:
            return weight.reshape(out_ch, mixed_ch // 4, 2, 2)
        spread = torch.eye(4, dtype=weight.dtype, device=weight.device)  # sub-pixel s of a channel -> pixel s
        kernel = weight.t()[:, None, :, None] * spread[None, :, None, :]  # (mixed_ch, 4, out_ch, 4)
        return kernel.reshape(mixed_ch * 4, out_ch, 2, 2)


def norm_channels(norm: nn.BatchNorm2d, x: torch.Tensor, part: slice) -> torch.Tensor:
    """`norm` applied to channels `part` of its input, x being those channels: BatchNorm is per channel, so this is
    its slice (its running statistics, views of the buffers, are updated in place; the caller counts the batch)."""
    stats = (norm.running_mean[part], norm.running_var[part]) if norm.track_running_stats else (None, None)
    momentum = norm.momentum
    if momentum is None:  # a cumulative average, as nn.BatchNorm keeps it
        momentum = 1.0 / float(norm.num_batches_tracked) if norm.training and norm.track_running_stats else 0.0
    return F.batch_norm(x, *stats, norm.weight[part], norm.bias[part], norm.training or stats[0] is None,
                        momentum, norm.eps)


def reachable_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(x) for a 'same'-padded convolution (odd kernel, padding k // 2, stride 1); on a map smaller than its
    reach, without the taps that only ever meet the padding (they multiply zeros): a 7x7 kernel on a 2x2 map
    runs as its central 3x3."""
    (pad_h, pad_w), (height, width) = conv.padding, x.shape[-2:]
    reach_h, reach_w = min(pad_h, height - 1), min(pad_w, width - 1)
    if (reach_h, reach_w) == (pad_h, pad_w):
        return conv(x)
    weight = conv.weight[:, :, pad_h - reach_h:pad_h + reach_h + 1, pad_w - reach_w:pad_w + reach_w + 1]
    return F.conv2d(x, weight, conv.bias, padding=(reach_h, reach_w))


class DoubleConv3d(nn.Sequential):
    """(Conv3d 3x3x3 -> BatchNorm3d -> ReLU) twice, keeping T, H, W."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(
            nn.Conv3d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm3d(out_ch),
            nn.ReLU(inplace=True),
        )


class Down3d(nn.Sequential):
    """Stride-2 Conv3d (halves T, H, W; a length of 1 stays 1) then DoubleConv3d."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.Conv3d(in_ch, out_ch, 3, stride=2, padding=1, bias=False), DoubleConv3d(out_ch, out_ch))


class Up3d(nn.Module):
    """Stride-2 ConvTranspose3d to the size of the matching encoder level, optional skip concat, DoubleConv3d."""

    def __init__(self, in_ch: int, out_ch: int, skip_ch: int = 0):
        super().__init__()
        self.up = nn.ConvTranspose3d(in_ch, out_ch, 3, stride=2, padding=1)
        self.conv = DoubleConv3d(out_ch + skip_ch, out_ch)
        self.uses_skip = skip_ch > 0

    def forward(self, x: torch.Tensor, size: torch.Size, skip: torch.Tensor | None = None) -> torch.Tensor:
        # output_size picks the output padding per dimension, so odd sizes and T that shrank to 1 come back exactly
        x = self.up(x, output_size=size)  # (N, out_ch, *size)
        if self.uses_skip:
            x = torch.cat([skip, x], dim=1)
        return self.conv(x)
