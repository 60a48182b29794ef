#!/usr/bin/env python3
"""Writes the small ONNX files the importer tests read (tests/fixtures/onnx/).

Each valid fixture comes with `<name>.expected.json`: one input (NCHW values, or NHWC for
NHWC-input models, flattened) and the output a reference implementation (PyTorch) computes, so
the tests check the imported graph's function, not only its structure.

Forms covered, as exporters write them:
  torch_resnet       torch.onnx.export (opset 13): residual blocks, 1x1 projection shortcut,
                     batch norm folded by the exporter, Flatten + Gemm
  torch_dscnn        torch.onnx.export (opset 11): ZeroPad2d -> Pad, depthwise-separable blocks,
                     ReLU6 -> Clip with min/max inputs, x.view(x.size(0), -1) -> Shape/Gather/
                     Unsqueeze/Concat/Reshape, MaxPool
  separate_bn        hand-built (opset 13): BatchNormalization kept separate, bias-free Conv plus
                     Add of a bias, GlobalAveragePool, Flatten, MatMul + Add
  tflite_style       hand-built like tf2onnx output for a TFLite model (opset 13): NHWC input,
                     Transpose to NCHW, Pad, Conv with BN folded, Clip(0, 6), depthwise Conv,
                     Transpose back to NHWC, Reshape [1, -1], MatMul + Add, Softmax
  legacy_opset9      hand-built (opset 9): Clip and Pad with attributes, AveragePool, Gemm
Malformed ones: unsupported_op (Sigmoid), weights_as_inputs, dilated_conv, truncated, not_onnx.

Run with a Python that has torch and onnx (Debian: python3-torch python3-onnx):
    /usr/bin/python3 tools/make_onnx_fixtures.py
"""

import json
import os

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "onnx")
rng = np.random.default_rng(0)


def write_expected(name, x, y):
    with open(os.path.join(OUT, f"{name}.expected.json"), "w") as f:
        json.dump({"input": [float(v) for v in x.flatten()], "output": [float(v) for v in y.flatten()]}, f)


def randomize_bn(module):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.tensor(rng.normal(0, 0.2, c), dtype=torch.float32))
            m.running_var.copy_(torch.tensor(rng.uniform(0.5, 1.5, c), dtype=torch.float32))
            m.weight.data.copy_(torch.tensor(rng.uniform(0.5, 1.5, c), dtype=torch.float32))
            m.bias.data.copy_(torch.tensor(rng.normal(0, 0.1, c), dtype=torch.float32))


def export_torch(name, model, shape, opset):
    torch.manual_seed(0)
    randomize_bn(model)
    model.eval()
    x = torch.tensor(rng.uniform(-1, 1, shape), dtype=torch.float32)
    path = os.path.join(OUT, f"{name}.onnx")
    torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"], output_names=["logits"])
    with torch.no_grad():
        write_expected(name, x.numpy(), model(x).numpy())


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.shortcut is None else self.shortcut(x)
        return F.relu(y + s)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = Block(8, 8, 1)
        self.block2 = Block(8, 16, 2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class TinyDsCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 1, 4, 5))
        self.conv = nn.Conv2d(1, 16, (10, 4), 2)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False)
        self.dw_bn = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 24, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(24)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(24 * 12 * 2, 12)

    def forward(self, x):
        x = F.relu6(self.bn(self.conv(self.pad(x))))
        x = F.relu6(self.dw_bn(self.dw(x)))
        x = F.relu6(self.pw_bn(self.pw(x)))
        x = self.pool(x)
        return self.fc(x.view(x.size(0), -1))


def tensor(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def save(name, nodes, inputs, outputs, initializers, opset):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fixtures")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, f"{name}.onnx"))
    return model


def separate_bn():
    w1 = rng.normal(0, 0.3, (6, 3, 3, 3))
    b1 = rng.normal(0, 0.1, 6)
    bn1 = [rng.uniform(0.5, 1.5, 6), rng.normal(0, 0.1, 6), rng.normal(0, 0.2, 6), rng.uniform(0.5, 1.5, 6)]
    w2 = rng.normal(0, 0.3, (8, 6, 3, 3))
    bias2 = rng.normal(0, 0.1, (8, 1, 1))
    bn2 = [rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.1, 8), rng.normal(0, 0.2, 8), rng.uniform(0.5, 1.5, 8)]
    wf = rng.normal(0, 0.3, (8, 5))
    bf = rng.normal(0, 0.1, 5)
    inits = [tensor("w1", w1), tensor("b1", b1), tensor("w2", w2), tensor("bias2", bias2), tensor("wf", wf), tensor("bf", bf)]
    for i, p in enumerate(bn1):
        inits.append(tensor(f"bn1_{i}", p))
    for i, p in enumerate(bn2):
        inits.append(tensor(f"bn2_{i}", p))
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1"] + [f"bn1_{i}" for i in range(4)], ["n1"], name="bn1", epsilon=1e-3),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "bias2"], ["c2b"], name="conv2_bias"),
        helper.make_node("BatchNormalization", ["c2b"] + [f"bn2_{i}" for i in range(4)], ["n2"], name="bn2"),
        helper.make_node("Relu", ["n2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("MatMul", ["f", "wf"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "bf"], ["logits"], name="fc_bias"),
    ]
    save("separate_bn", nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
         [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], inits, 13)

    x = rng.uniform(-1, 1, (1, 3, 8, 8))
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)
    y = F.conv2d(t(x), t(w1), t(b1), padding=1)
    y = F.relu(F.batch_norm(y, t(bn1[2]), t(bn1[3]), t(bn1[0]), t(bn1[1]), eps=1e-3))
    y = F.max_pool2d(y, 2, 2)
    y = F.conv2d(y, t(w2), padding=1) + t(bias2)
    y = F.relu(F.batch_norm(y, t(bn2[2]), t(bn2[3]), t(bn2[0]), t(bn2[1]), eps=1e-5))
    y = torch.flatten(F.adaptive_avg_pool2d(y, 1), 1) @ t(wf) + t(bf)
    write_expected("separate_bn", x, y.numpy())


def tflite_style():
    h, w = 12, 10
    w1 = rng.normal(0, 0.3, (8, 1, 3, 3))
    b1 = rng.normal(0, 0.1, 8)
    wd = rng.normal(0, 0.3, (8, 1, 3, 3))
    bd = rng.normal(0, 0.1, 8)
    oh, ow = h // 2, w // 2
    wf = rng.normal(0, 0.1, (oh * ow * 8, 4))  # rows indexed in NHWC order
    bf = rng.normal(0, 0.1, 4)
    inits = [tensor("w1", w1), tensor("b1", b1), tensor("wd", wd), tensor("bd", bd), tensor("wf", wf), tensor("bf", bf),
             numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64), "pads"),
             numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape"),
             tensor("zero", 0.0), tensor("six", 6.0)]
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Pad", ["nchw", "pads"], ["padded"], name="pad", mode="constant"),
        helper.make_node("Conv", ["padded", "w1", "b1"], ["c1"], name="conv", strides=[2, 2]),
        helper.make_node("Clip", ["c1", "zero", "six"], ["a1"], name="relu6_1"),
        helper.make_node("Conv", ["a1", "wd", "bd"], ["c2"], name="dw", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2", "zero", "six"], ["a2"], name="relu6_2"),
        helper.make_node("Transpose", ["a2"], ["nhwc"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc", "shape"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "wf"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "bf"], ["z"], name="fc_bias"),
        helper.make_node("Softmax", ["z"], ["probs"], name="softmax", axis=-1),
    ]
    save("tflite_style", nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, h, w, 1])],
         [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 4])], inits, 13)

    x = rng.uniform(-1, 1, (1, h, w, 1))
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)
    y = F.pad(t(x).permute(0, 3, 1, 2), (0, 1, 0, 1))
    y = torch.clamp(F.conv2d(y, t(w1), t(b1), stride=2), 0, 6)
    y = torch.clamp(F.conv2d(y, t(wd), t(bd), padding=1, groups=8), 0, 6)
    y = y.permute(0, 2, 3, 1).reshape(1, -1) @ t(wf) + t(bf)
    write_expected("tflite_style", x, torch.softmax(y, -1).numpy())


def legacy_opset9():
    w1 = rng.normal(0, 0.3, (4, 2, 3, 3))
    wf = rng.normal(0, 0.3, (3, 4 * 3 * 3))
    bf = rng.normal(0, 0.1, 3)
    inits = [tensor("w1", w1), tensor("wf", wf), tensor("bf", bf)]
    nodes = [
        helper.make_node("Pad", ["input"], ["p"], name="pad", mode="constant", pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.0),
        helper.make_node("Conv", ["p", "w1"], ["c"], name="conv", kernel_shape=[3, 3]),
        helper.make_node("Clip", ["c"], ["r"], name="clip", min=0.0, max=6.0),
        helper.make_node("AveragePool", ["r"], ["a"], name="avgpool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["a"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], name="fc", transB=1),
    ]
    save("legacy_opset9", nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 6, 6])],
         [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])], inits, 9)
    x = rng.uniform(-1, 1, (1, 2, 6, 6))
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)
    y = torch.clamp(F.conv2d(F.pad(t(x), (1, 1, 1, 1)), t(w1)), 0, 6)
    y = torch.flatten(F.avg_pool2d(y, 2, 2), 1) @ t(wf).T + t(bf)
    write_expected("legacy_opset9", x, y.numpy())


def malformed():
    w = tensor("w", rng.normal(0, 0.3, (4, 1, 3, 3)))
    inp = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])]
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])]
    save("unsupported_op", [helper.make_node("Conv", ["input", "w"], ["c"], name="conv"),
                            helper.make_node("Sigmoid", ["c"], ["y"], name="gate")], inp, out, [w], 13)
    save("dilated_conv", [helper.make_node("Conv", ["input", "w"], ["y"], name="conv", dilations=[2, 2])], inp,
         [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])], [w], 13)
    weight_input = [inp[0], helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 1, 3, 3])]
    save("weights_as_inputs", [helper.make_node("Conv", ["input", "w"], ["y"], name="conv")], weight_input, out, [], 13)
    with open(os.path.join(OUT, "torch_resnet.onnx"), "rb") as f:
        data = f.read()
    with open(os.path.join(OUT, "truncated.onnx"), "wb") as f:
        f.write(data[: len(data) // 3])
    with open(os.path.join(OUT, "not_onnx.onnx"), "w") as f:
        f.write("this is a text file, not an ONNX model\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    export_torch("torch_resnet", TinyResNet(), (1, 3, 16, 16), 13)
    export_torch("torch_dscnn", TinyDsCnn(), (1, 1, 49, 10), 11)
    separate_bn()
    tflite_style()
    legacy_opset9()
    malformed()
    for name in sorted(os.listdir(OUT)):
        print(f"{name}: {os.path.getsize(os.path.join(OUT, name))} bytes")


if __name__ == "__main__":
    main()
