"""Quantise the exported recognizer to integers (static, QDQ format).

  /usr/bin/python3 training/quantize.py --model training/model/pero-latin-rec.onnx \\
      --out training/model/pero-latin-rec-int8.onnx

Every convolution gets 7-bit weights in int8 (one scale per output channel;
7 bits because ONNX Runtime's integer kernels for CPUs without VNNI add
pairs of u8 x s8 products in 16 bits, which full 8-bit weights can
overflow) and an int32 bias; every activation between them (the channel
mean, the ReLU, pooling and residual outputs) a uint8 scale and zero point
measured on calibration lines rendered like the training ones. The result is a standard
ONNX model with QuantizeLinear/DequantizeLinear pairs, opset 13, which ONNX
Runtime turns into integer convolutions on load; the softmax and the last
convolution's output stay in float. The calibration range of each
activation is the 99.99th percentile of its values over the calibration set
(pixel inputs are always -1..1), so that a few outliers do not coarsen the
scale of all the others.
"""

import argparse
import os
import random
import sys

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import model as modelmod  # noqa: E402
import render  # noqa: E402
import texts as textmod  # noqa: E402
import warmstart  # noqa: E402
from train import TRAIN_PAGES, batch_tensors, default_corpus  # noqa: E402


def calibration_lines(corpus, n, seed):
    """Synthetic lines from the training distribution and real training
    lines (never a scored page)."""
    texts = textmod.Texts(corpus, max_per_source=2000)
    fonts = render.Fonts(corpus)
    real = render.RealLines(corpus, TRAIN_PAGES)
    sampler = render.Sampler(texts, fonts, real, 0.15)
    rng = random.Random(seed)
    return [sampler.sample(rng) for _ in range(n)]


def activation_samples(net, lines, quantile):
    """Per activation of the network, the value range over lines, keyed
    by what it is: 'mean' (the channel mean), 'relu<i>' (the ReLU after
    convolution i), 'add<j>' (residual block j's output)."""
    convs = [c for c, _ in warmstart.convolutions(net)]
    values = {}

    def keep(key, t):
        values.setdefault(key, []).append(t.detach().flatten().numpy())

    hooks = [convs[0].register_forward_pre_hook(lambda m, inp: keep("mean", inp[0]))]
    relus = [m[2] for m in net.features if isinstance(m, torch.nn.Sequential)] + [net.project[2]]
    for i, r in enumerate(relus):
        hooks.append(r.register_forward_hook(lambda m, inp, out, i=i: keep(f"relu{i}", out)))
    for j, blk in enumerate(net.blocks):
        k = len(relus) + j
        hooks.append(blk.bn.register_forward_hook(lambda m, inp, out, k=k: keep(f"relu{k}", torch.relu(out))))
        hooks.append(blk.register_forward_hook(lambda m, inp, out, j=j: keep(f"add{j}", out)))
    net.eval()
    with torch.no_grad():
        for img, text in lines:
            x, _, _, _ = batch_tensors([(img, text)])
            net(x)
    for h in hooks:
        h.remove()
    ranges = {}
    for key, parts in values.items():
        v = np.concatenate(parts)
        lo, hi = float(min(0.0, np.quantile(v, 1 - quantile))), float(max(0.0, np.quantile(v, quantile)))
        if key == "mean":
            lo, hi = -1.0, 1.0
        ranges[key] = (lo, hi)
    return ranges


def uint8_params(lo, hi):
    scale = max(hi - lo, 1e-8) / 255.0
    zp = int(round(-lo / scale))
    return np.float32(scale), np.uint8(min(255, max(0, zp)))


def quantize(src, dst, ranges, weight_bits=7):
    m = onnx.load(src)
    g = m.graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    nodes = list(g.node)
    convs = [n for n in nodes if n.op_type == "Conv"]

    # Which activation each quantised tensor is: the mean, each ReLU, each
    # residual Add; pooling and reshaping keep their input's parameters.
    params = {}
    relu_i, add_j = 0, 0
    for n in nodes:
        if n.op_type == "ReduceMean":
            params[n.output[0]] = uint8_params(*ranges["mean"])
        elif n.op_type == "Relu":
            params[n.output[0]] = uint8_params(*ranges[f"relu{relu_i}"])
            relu_i += 1
        elif n.op_type == "Add":
            params[n.output[0]] = uint8_params(*ranges[f"add{add_j}"])
            add_j += 1
        elif n.op_type in ("MaxPool", "Reshape") and n.input[0] in params:
            params[n.output[0]] = params[n.input[0]]
    # One ReLU after every convolution but the head, one Add per block.
    if relu_i != len(convs) - 1 or add_j != sum(k.startswith("add") for k in ranges):
        raise ValueError(f"{src}: graph does not have the recognizer's layout")

    new_inits = [i for i in g.initializer]
    out_nodes = []
    rename = {}  # float tensor -> its dequantised copy
    source = {}  # dequantised copy -> float tensor

    def const(name, arr):
        new_inits.append(numpy_helper.from_array(arr, name))
        return name

    for n in nodes:
        n.input[:] = [rename.get(x, x) for x in n.input]
        if n.op_type == "Conv":
            w = init[n.input[1]]
            b = init[n.input[2]] if len(n.input) > 2 else np.zeros(w.shape[0], np.float32)
            if n.input[0] not in source:
                raise ValueError(f"{src}: convolution input {n.input[0]} is not quantised")
            sx = params[source[n.input[0]]][0]
            qmax = 2 ** (weight_bits - 1) - 1
            sw = np.maximum(np.abs(w.reshape(w.shape[0], -1)).max(axis=1), 1e-8) / qmax
            wq = np.clip(np.round(w / sw.reshape(-1, *([1] * (w.ndim - 1)))), -qmax, qmax).astype(np.int8)
            bq = np.round(b / (sx * sw)).astype(np.int32)
            base = n.name or n.output[0]
            wdq = base + "/w_dq"
            out_nodes.append(helper.make_node(
                "DequantizeLinear", [const(base + "/w_q", wq), const(base + "/w_scale", sw.astype(np.float32)),
                                     const(base + "/w_zp", np.zeros(len(sw), np.int8))], [wdq], axis=0))
            bdq = base + "/b_dq"
            out_nodes.append(helper.make_node(
                "DequantizeLinear", [const(base + "/b_q", bq), const(base + "/b_scale", (sx * sw).astype(np.float32)),
                                     const(base + "/b_zp", np.zeros(len(sw), np.int32))], [bdq], axis=0))
            n.input[1] = wdq
            if len(n.input) > 2:
                n.input[2] = bdq
            else:
                n.input.append(bdq)
        out_nodes.append(n)
        for o in n.output:
            if o in params:
                scale, zp = params[o]
                s, z = const(o + "/scale", np.array(scale, np.float32)), const(o + "/zp", np.array(zp, np.uint8))
                out_nodes.append(helper.make_node("QuantizeLinear", [o, s, z], [o + "/q"]))
                out_nodes.append(helper.make_node("DequantizeLinear", [o + "/q", s, z], [o + "/dq"]))
                rename[o] = o + "/dq"
                source[o + "/dq"] = o

    used = {x for n in out_nodes for x in n.input}
    del g.initializer[:]
    g.initializer.extend(i for i in new_inits if i.name in used)
    del g.node[:]
    g.node.extend(out_nodes)
    onnx.checker.check_model(m)
    onnx.save(m, dst)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="training/model/pero-latin-rec.onnx")
    ap.add_argument("--out", default="training/model/pero-latin-rec-int8.onnx")
    ap.add_argument("--corpus", default=default_corpus())
    ap.add_argument("--lines", type=int, default=300, help="calibration lines")
    ap.add_argument("--quantile", type=float, default=0.9999)
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--weight-bits", type=int, default=7, choices=[7, 8],
                    help="7 keeps u8 x s8 products from saturating on CPUs without VNNI (AVX2, AVX-512F)")
    args = ap.parse_args(argv)

    torch.set_num_threads(2)
    lines = calibration_lines(args.corpus, args.lines, args.seed)
    calib, _, _, _ = batch_tensors(lines[:64])
    net = warmstart.from_onnx(modelmod.Recognizer(), args.model, calib)
    ranges = activation_samples(net, lines, args.quantile)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    quantize(args.model, args.out, ranges, args.weight_bits)
    print(f"{args.out}: {os.path.getsize(args.out) / 1e6:.1f} MB from {args.lines} calibration lines")


if __name__ == "__main__":
    main()
