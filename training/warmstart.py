"""Start training from an exported model instead of from scratch.

The ONNX export folds every batch normalisation into the convolution before
it, so an exported model holds conv weights and biases only. from_onnx puts
them back into a Recognizer and rebuilds each BatchNorm so that it is an
identity plus the folded bias on the activations of a calibration batch:
running mean and variance are that batch's statistics of the conv output,
scale and shift undo them. In eval mode the network then computes exactly
what the ONNX model does; in train mode, on batches like the calibration
one, nearly so, and training goes on from there."""

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn


def convolutions(net):
    """The network's convolutions in graph order, each with the BatchNorm
    that follows it (None for the head)."""
    out = []
    feats = list(net.features)
    for i, mod in enumerate(feats):
        if isinstance(mod, nn.Sequential):
            out.append((mod[0], mod[1]))
    out.append((net.project[0], net.project[1]))
    for blk in net.blocks:
        out.append((blk.conv, blk.bn))
    out.append((net.head, None))
    return out


def onnx_convs(path):
    """(weight, bias) of each Conv node of an ONNX model, in graph order."""
    m = onnx.load(path)
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    out = []
    for node in m.graph.node:
        if node.op_type == "Conv":
            w = init[node.input[1]]
            b = init[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
            out.append((w, b))
    return out


def from_onnx(net, path, calib):
    """Load the exported model at path into net (a Recognizer of the same
    shape), with BatchNorm statistics from calib: a batch (N x 3 x H x W)
    or a list of batches, best batches like the training ones (padding
    counts in the statistics)."""
    pairs = convolutions(net)
    weights = onnx_convs(path)
    if len(weights) != len(pairs):
        raise ValueError(f"{path}: {len(weights)} convolutions, the network has {len(pairs)}")
    with torch.no_grad():
        for (conv, bn), (w, b) in zip(pairs, weights):
            if tuple(conv.weight.shape) != w.shape:
                raise ValueError(f"{path}: conv weight {w.shape}, the network wants {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            if bn is None:
                conv.bias.copy_(torch.from_numpy(np.array(b)))
                continue
            # Exact identity first: BN(z) = z + b.
            bn.running_mean.zero_()
            bn.running_var.fill_(1 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(np.array(b)))

        sums = {}

        def hook(mod, _inp, out):
            dims = [0, 2, 3] if out.dim() == 4 else [0, 2]
            n = out.numel() // out.shape[1]
            s, s2, c = sums.get(mod, (0, 0, 0))
            sums[mod] = (s + out.sum(dim=dims), s2 + (out * out).sum(dim=dims), c + n)

        handles = [conv.register_forward_hook(hook) for conv, bn in pairs if bn is not None]
        net.eval()
        for x in calib if isinstance(calib, (list, tuple)) else [calib]:
            net(x)
        for h in handles:
            h.remove()
        for conv, bn in pairs:
            if bn is None:
                continue
            s, s2, n = sums[conv]
            mu = s / n
            var = (s2 / n - mu * mu).clamp(min=0)
            b = bn.bias.clone()
            bn.running_mean.copy_(mu)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mu + b)
    return net
