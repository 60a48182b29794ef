#!/usr/bin/env python3
"""Runs Deeploy's code generation on qsearch's Deeploy export and reports what Deeploy read.

    deeploy_generate.py DIR [TARGET ...]

TARGET is PULPOpen or Generic (both by default). For each target this loads DIR/TARGET/network.onnx with
onnx-graphsurgeon, builds Deeploy's platform and deployer (the input, the image's bytes 0..255:
uint8 on PULP-open, int8 with offset 128 on Generic, as Deeploy's own test generator types it),
runs `prepare()` (lowering, parsing, type checking, binding) and writes the generated C into
DIR/TARGET/: `Network.h` and `Network.c`, laid out as Deeploy's test generator lays them
out. It then writes DIR/deeploy.json: per target, whether generation succeeded (and the error
otherwise) and every layer Deeploy bound, in execution order: its operator, the parser that read
it, its input and output tensors with the C types Deeploy gave them, its scalar parameters
(shifts, levels, signedness, strides, pads, ...) and the values of every constant it reads
(weights, multipliers, offsets), so that qsearch can compare them with its integer graph.

It uses only the `Deeploy` package of `deeploy-pulp` (PyPI) and its dependencies.
"""

import contextlib
import io
import json
import os
import sys
import traceback


def jsonable(value):
    """A parser's value as JSON: numbers, strings, lists; anything else as its repr."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return repr(value)


def constant(buffer):
    """A constant buffer's shape and values (integers where they are integers)."""
    import numpy as np

    values = np.asarray(buffer.values)
    flat = values.reshape(-1)
    if np.issubdtype(flat.dtype, np.floating) and np.all(np.floor(flat) == flat):
        flat = flat.astype(np.int64)
    return {
        "shape": [int(d) for d in values.shape],
        "type": buffer._type.referencedType.typeName if hasattr(buffer, "_type") else None,
        "values": [jsonable(v) for v in flat.tolist()],
    }


def describe(deployer):
    """Every bound layer: operator, parser, tensors (with their C types) and constants."""
    from Deeploy.DeeployTypes import ConstantBuffer, VariableBuffer

    ctxt = deployer.ctxt
    layers = []
    for node_name, layer in deployer.layerBinding.items():
        node = layer.node
        representation = layer.mapper.parser.operatorRepresentation
        params = {}
        constants = {}
        tensors = {}
        for key, value in representation.items():
            if isinstance(value, str) and ctxt.is_buffer(value):
                buffer = ctxt.lookup(value)
                if isinstance(buffer, ConstantBuffer):
                    constants[key] = dict(constant(buffer), name=value)
                elif isinstance(buffer, VariableBuffer):
                    tensors[key] = {
                        "name": value,
                        "type": buffer._type.referencedType.typeName
                        if getattr(buffer, "_type", None) is not None else None,
                        "shape": [int(d) for d in buffer.shape],
                        "n_levels": jsonable(getattr(buffer, "nLevels", None)),
                        "signed": jsonable(getattr(buffer, "_signed", None)),
                    }
            elif key not in ("nodeName", "nodeOp"):
                params[key] = jsonable(value)
        layers.append({
            "node": node_name,
            "op": node.op,
            "parser": type(layer.mapper.parser).__name__,
            "inputs": [t.name for t in node.inputs],
            "outputs": [t.name for t in node.outputs],
            "tensors": tensors,
            "params": params,
            "constants": constants,
        })
    return layers


def target(name):
    """Deeploy's platform, a fresh copy of its optimizer passes, its deployer class and whether
    it runs channels first, for TARGET."""
    from Deeploy.DeeployTypes import TopologyOptimizer

    if name == "PULPOpen":
        from Deeploy.Targets.PULPOpen.Deployer import PULPDeployer
        from Deeploy.Targets.PULPOpen.Platform import PULPOptimizer, PULPPlatform

        return PULPPlatform(), TopologyOptimizer(list(PULPOptimizer.passes), name="PULPOptimizer"), \
            PULPDeployer, False
    if name == "Generic":
        from Deeploy.Targets.Generic.Deployer import GenericDeployer
        from Deeploy.Targets.Generic.Platform import GenericOptimizer, GenericPlatform

        return GenericPlatform(), TopologyOptimizer(list(GenericOptimizer.passes), name="GenericOptimizer"), \
            GenericDeployer, True
    raise ValueError(f"unknown target {name!r}: PULPOpen or Generic")


NETWORK_H = """#ifndef __DEEPLOY_HEADER__
#define __DEEPLOY_HEADER__
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
{includes}
{prototypes}
{io}
#endif
"""


def generate(out_dir, name):
    """Generates C for target NAME from OUT_DIR/NAME/network.onnx into OUT_DIR/NAME; returns
    what Deeploy read."""
    import onnx
    import onnx_graphsurgeon as gs
    from Deeploy.AbstractDataTypes import PointerClass
    from Deeploy.CommonExtensions.DataTypes import int8_t, uint8_t

    platform, optimizer, deployer_class, channels_first = target(name)
    target_dir = os.path.join(out_dir, name)
    graph = gs.import_onnx(onnx.load_model(os.path.join(target_dir, "network.onnx")))
    # The input holds the image's bytes 0..255: uint8 where the platform types tensors by their
    # sign (PULP-open), int8 shifted by 128 where it propagates signs (Generic), as Deeploy's
    # own test generator does.
    sign_propagating = name == "Generic"
    input_type = PointerClass(int8_t if sign_propagating else uint8_t)
    offset = 128 if sign_propagating else 0
    input_types = {f"input_{i}": input_type for i in range(len(graph.inputs))}
    offsets = {key: offset for key in input_types}
    kwargs = dict(name="DeeployNetwork", default_channels_first=channels_first,
                  deeployStateDir=os.path.join(target_dir, "deeployStates"))
    if sign_propagating:
        kwargs["inputOffsets"] = offsets
    deployer = deployer_class(graph, platform, input_types, optimizer, lambda g: list(g.nodes), **kwargs)
    deployer.prepare()

    pulp = name == "PULPOpen"
    core = "" if pulp else "uint32_t core_id, uint32_t numThreads"
    unused = "" if pulp else \
        "__attribute__((unused)) uint32_t core_id, __attribute__((unused)) uint32_t numThreads"
    header = NETWORK_H.format(includes=deployer.generateIncludeString(),
                              prototypes=f"void RunNetwork({core});\nvoid InitNetwork({core});\n",
                              io=deployer.generateIOBufferInitializationCode())
    body = "#include <stdio.h>\n#include <stdlib.h>\n#include <math.h>\n"
    body += deployer.generateIncludeString()
    body += '\n#include "Network.h"\n\n'
    body += deployer.generateBufferInitializationCode()
    body += deployer.generateGlobalDefinitionCode()
    body += f"\nvoid RunNetwork({unused}) {{\n"
    body += deployer.generateInferenceInitializationCode()
    body += deployer.generateFunction()
    body += f"\n}}\n\nvoid InitNetwork({unused}) {{\n"
    body += deployer.generateEngineInitializationCode()
    body += deployer.generateBufferAllocationCode()
    body += "\n}\n"
    for file, text in (("Network.h", header), ("Network.c", body)):
        with open(os.path.join(target_dir, file), "w") as f:
            f.write(text)

    inputs = [{"name": b.name, "type": b._type.referencedType.typeName, "shape": [int(d) for d in b.shape],
               "offset": offset} for b in deployer.inputs()]
    outputs = [{"name": b.name, "type": b._type.referencedType.typeName, "shape": [int(d) for d in b.shape],
                "n_levels": jsonable(getattr(b, "nLevels", None)), "signed": jsonable(getattr(b, "_signed", None))}
               for b in deployer.outputs()]
    return {
        "ok": True,
        "channels_first": channels_first,
        "inputs": inputs,
        "outputs": outputs,
        "files": [os.path.join(name, "Network.h"), os.path.join(name, "Network.c")],
        "layers": describe(deployer),
    }


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = argv[1]
    targets = argv[2:] or ["PULPOpen", "Generic"]
    try:
        from importlib.metadata import version

        deeploy_version = version("deeploy-pulp")
    except Exception:  # noqa: BLE001 - reported, not fatal
        deeploy_version = None
    report = {"deeploy_pulp": deeploy_version, "targets": {}}
    # Deeploy logs its progress (and prints some of it); keep it for the report, not the terminal.
    import logging

    from Deeploy.Logging import DEFAULT_LOGGER

    for handler in list(DEFAULT_LOGGER.handlers):
        DEFAULT_LOGGER.removeHandler(handler)
    DEFAULT_LOGGER.propagate = False
    for name in targets:
        log = io.StringIO()
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
        DEFAULT_LOGGER.addHandler(handler)
        try:
            with contextlib.redirect_stdout(log):
                report["targets"][name] = generate(out_dir, name)
        except Exception as error:  # noqa: BLE001 - every failure is reported per target
            report["targets"][name] = {
                "ok": False,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        DEFAULT_LOGGER.removeHandler(handler)
        report["targets"][name]["log"] = log.getvalue()[-20000:]
    path = os.path.join(out_dir, "deeploy.json")
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(path + ".tmp", path)
    ok = all(t["ok"] for t in report["targets"].values())
    for name, t in report["targets"].items():
        print(f"{name}: " + (f"{len(t['layers'])} layers" if t["ok"] else f"FAILED: {t['error']}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
