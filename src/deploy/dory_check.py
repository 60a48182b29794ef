#!/usr/bin/env python3
"""Checks a DORY ONNX export written by `qsearch deploy`.

Usage: check_dory_onnx.py network.onnx images.bin outputs.bin TENSOR...

Validates the model with onnx.checker (full check, shape inference included), checks the
conventions DORY's Quantlab frontend relies on (activation tensors named by increasing integers,
no bias on Conv/MatMul, per-channel requantization constants, the annotations weight_bits,
mult_bits, add_bits, out_bits and QuantLab's residual-add attributes), then runs it on every image
of images.bin (bytes, HWC, one image after another), reading every tensor as integers the way
DORY does. Writes the named tensors of every image to outputs.bin (int32 little-endian, NCHW
order, image after image).
"""
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

EXACT = 2.0**53
REQUANT = ("mul", "add", "shift", "n_levels", "rq")
ADD_ATTRIBUTES = {f"{side}_{part}" for side in ("in1", "in2", "out") for part in REQUANT}
ANNOTATIONS = {"weight_bits", "mult_bits", "add_bits", "out_bits", "out_signed"} | ADD_ATTRIBUTES


def attributes(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def exact_int(values, node):
    """Float products of integers, back to integers; they are exact below 2^53."""
    if np.abs(values).max(initial=0) >= EXACT:
        sys.exit(f"node {node.name}: values reach 2^53, beyond exact double arithmetic")
    return np.rint(values).astype(np.int64)


def windows(x, a, fill):
    """[C, OH, OW, KH, KW] views of x ([1, C, H, W]) under a node's window attributes."""
    kh, kw = a["kernel_shape"]
    sy, sx = a.get("strides", [1, 1])
    top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
    padded = np.pad(x[0], ((0, 0), (top, bottom), (left, right)), constant_values=fill)
    view = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))
    return view[:, ::sy, ::sx]


def conv(node, x, w):
    a = attributes(node)
    groups = a.get("group", 1)
    if a.get("dilations", [1, 1]) != [1, 1]:
        sys.exit(f"node {node.name}: dilated convolutions are not expected")
    cols = windows(x, a, 0).astype(np.float64)
    cin, cout = w.shape[1], w.shape[0]
    out = []
    for g in range(groups):
        part = cols[g * cin:(g + 1) * cin]
        wg = w[g * (cout // groups):(g + 1) * (cout // groups)].astype(np.float64)
        out.append(np.tensordot(wg, part, axes=([1, 2, 3], [0, 3, 4])))
    return exact_int(np.concatenate(out)[None], node)


def quantlab_requant(a, side, x):
    """One requantization of QuantLab's residual add: (x * mul + add) >> shift, clamped to
    n_levels values (signed ones when out_signed is set), as DORY's add kernels compute it."""
    y = (x * a[f"{side}_mul"] + a[f"{side}_add"]) >> a[f"{side}_shift"]
    levels = a[f"{side}_n_levels"]
    lo = -(levels // 2) if a.get("out_signed") else 0
    return np.clip(y, lo, lo + levels - 1)


def run(model, image, wanted):
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for name, v in list(values.items()):
        if np.any(v != np.rint(v)):
            sys.exit(f"initializer {name}: holds a value that is not an integer")
        values[name] = v.astype(np.int64)
    values[model.graph.input[0].name] = image
    consumers = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node.op_type)
    for node in model.graph.node:
        x = [values[i] for i in node.input]
        a = attributes(node)
        op = node.op_type
        if op == "Conv":
            y = conv(node, *x)
        elif op == "MatMul":
            y = exact_int(x[0].astype(np.float64) @ x[1].astype(np.float64), node)
        elif op == "MaxPool":
            y = windows(x[0], a, np.iinfo(np.int64).min).max(axis=(3, 4))[None]
        elif op == "GlobalMaxPool":
            y = x[0].max(axis=(2, 3), keepdims=True)
        elif op == "Flatten":
            y = x[0].reshape(1, -1)
        elif op == "Mul":
            y = x[0] * x[1]
        elif op == "Add" and "out_mul" in a:
            total = quantlab_requant(a, "in1", x[0]) + quantlab_requant(a, "in2", x[1])
            y = quantlab_requant(a, "out", total)
        elif op == "Add":
            y = x[0] + x[1]
        elif op == "Div":
            # Integers divided by 2^shift and floored: a floor division.
            if consumers.get(node.output[0]) != ["Floor"] or np.any(x[1] <= 0):
                sys.exit(f"node {node.name}: Div must divide by a positive constant into a Floor")
            y = np.floor_divide(x[0], x[1])
        elif op == "Floor":
            y = x[0]
        elif op == "Clip":
            y = np.clip(x[0], int(a["min"]), int(a["max"]))
        else:
            sys.exit(f"node {node.name}: operator {op} is not part of qsearch's DORY export")
        values[node.output[0]] = y
    return [values[name] for name in wanted]


def check_conventions(model):
    """What DORY's Quantlab frontend relies on beyond standard ONNX."""
    needed = {"MatMul": ("weight_bits",), "Conv": ("weight_bits",), "Mul": ("mult_bits",),
              "Clip": ("out_bits",)}
    constants = {init.name: init for init in model.graph.initializer}
    previous = 0
    for node in model.graph.node:
        a = attributes(node)
        missing = [k for k in needed.get(node.op_type, ()) if k not in a]
        if node.op_type == "Add" and len(set(node.input) - set(constants)) == 2:
            missing += sorted(ADD_ATTRIBUTES - set(a))
        if missing:
            sys.exit(f"node {node.name} ({node.op_type}): missing annotation {', '.join(missing)}")
        if node.op_type in ("Conv", "MatMul") and len(node.input) != 2:
            sys.exit(f"node {node.name}: {node.op_type} must have no bias input")
        if node.op_type == "Clip":
            span = a["max"] - a["min"] + 1
            if span != 2 ** a["out_bits"]:
                sys.exit(f"node {node.name}: Clip [{a['min']}, {a['max']}] is not the whole range of out_bits")
        if node.op_type in ("Mul", "Add") and len(set(node.input) & set(constants)) == 1:
            const = constants[(set(node.input) & set(constants)).pop()]
            if len(const.dims) == 0:
                sys.exit(f"node {node.name}: requantization constant {const.name} must be per channel")
        output = node.output[0]
        if not output.isdigit() or int(output) <= previous:
            sys.exit(f"node {node.name}: output {output!r} must be an integer above {previous}")
        previous = int(output)


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    model_path, images_path, outputs_path, wanted = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    model = onnx.load(model_path)
    check_conventions(model)
    # The annotations are extra attributes that standard ONNX forbids on its operators; DORY
    # reads them with onnx.load. The checker sees the model without them.
    plain = onnx.ModelProto()
    plain.CopyFrom(model)
    for node in plain.graph.node:
        keep = [a for a in node.attribute if a.name not in ANNOTATIONS]
        del node.attribute[:]
        node.attribute.extend(keep)
    onnx.checker.check_model(plain, full_check=True)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    _, c, h, w = dims
    raw = np.fromfile(images_path, dtype=np.uint8)
    if raw.size % (c * h * w):
        sys.exit(f"{images_path}: {raw.size} bytes is not a whole number of {c}x{h}x{w} images")
    images = raw.reshape(-1, h, w, c).transpose(0, 3, 1, 2).astype(np.int64)
    with open(outputs_path, "wb") as out:
        for image in images:
            for tensor in run(model, image[None], wanted):
                out.write(tensor.astype("<i4").tobytes())
    print(f"DORY conventions hold; onnx.checker (full, annotations aside): ok, opset {model.opset_import[0].version}, "
          f"{len(model.graph.node)} nodes; ran {len(images)} images")


if __name__ == "__main__":
    main()
