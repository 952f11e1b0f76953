"""ONNX files as they ship: without the exporter's debug records, and (INT8) with short tensor names.

torch.onnx's exporter annotates every node with its Python stack trace, FX node and class hierarchy (local
paths included) and records every intermediate shape; onnxruntime reads none of it. In a 0.2 M-parameter
student that text is a tenth of the INT8 file, and the quantizer's tensor names
("blocks.3.pw.conv.weight_quantized", "..._QuantizeLinear_Output") another twentieth.
"""
from __future__ import annotations

from pathlib import Path


def slim(path: Path, short_names: bool = False) -> Path:
    """Rewrite the ONNX file at `path` without metadata and intermediate shapes; with `short_names`, every
    tensor but the graph's inputs and outputs is renamed to a short id (node names, which per-layer
    profiles read, are kept). The graph computes exactly what it did."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    del model.metadata_props[:], graph.value_info[:]
    for item in (*graph.node, *graph.initializer, *graph.input, *graph.output):
        del item.metadata_props[:]
    if short_names:
        _shorten(graph)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _shorten(graph) -> None:
    keep = {v.name for v in (*graph.input, *graph.output)}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:  # "" marks an omitted optional input
            return name
        return names.setdefault(name, f"t{len(names):x}")

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
    for node in graph.node:
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
