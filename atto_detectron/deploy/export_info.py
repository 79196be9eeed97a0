"""
What an export folder holds and how it is read back: the formats and their model files
(:data:`MODEL_FILES`) and engines (:data:`FORMAT_ENGINES`), ``export_info.json``
(:func:`read_export_info`), the names of the flattened outputs, and the outputs schema,
which is checked to name only Detectron2's schema classes before anything is built
(:func:`load_outputs_schema`).
"""

import dataclasses
import json
import os
from typing import Dict, List

from detectron2.export.flatten import (
    DictSchema,
    IdentitySchema,
    InstancesSchema,
    ListSchema,
    TensorWrapSchema,
    TupleSchema,
)
from detectron2.structures import BitMasks, Boxes, ROIMasks, RotatedBoxes

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_METHODS",
    "MODEL_FILES",
    "FORMAT_ENGINES",
    "INFO_FILE",
    "read_export_info",
    "load_outputs_schema",
]

EXPORT_FORMATS = ("torchscript", "onnx")
EXPORT_METHODS = ("tracing", "scripting")
# "openvino" is OpenVINO's IR, which export_model does not write: the INT8 model of NNCF
# (atto_detectron.deploy.quantize) is saved in it.
MODEL_FILES = {"torchscript": "model.ts", "onnx": "model.onnx", "openvino": "model.xml"}
INFO_FILE = "export_info.json"
# The engines that run each format; the first is ExportedModel's default.
FORMAT_ENGINES = {
    "torchscript": ("torchscript",),
    "onnx": ("onnxruntime", "openvino"),
    "openvino": ("openvino",),
}


def _dotted_names(classes) -> Dict[str, type]:
    # Every name Detectron2's dump_dataclass may write for each class: its module or a
    # package above it that re-exports it, then the class name.
    names = {}
    for cls in classes:
        parts = cls.__module__.split(".")
        for k in range(1, len(parts) + 1):
            names[".".join(parts[:k] + [cls.__qualname__])] = cls
    return names


# The only classes an outputs schema of export_info.json may name: the schemas of
# detectron2.export.flatten and the tensor wrappers its TensorWrapSchema rebuilds.
# Detectron2's instantiate() would call whatever "_target_" names, e.g. builtins.open.
_SCHEMA_CLASSES = _dotted_names(
    (ListSchema, TupleSchema, IdentitySchema, DictSchema, InstancesSchema, TensorWrapSchema)
)
_WRAPPED_STRUCTURES = _dotted_names((Boxes, RotatedBoxes, BitMasks, ROIMasks))


def _check_schema(node, info_path: str, where: str = "outputs_schema") -> None:
    # Walks the whole schema before anything is built; see _SCHEMA_CLASSES.
    def refuse(what):
        schemas = ", ".join(sorted({c.__name__ for c in _SCHEMA_CLASSES.values()}))
        structures = ", ".join(sorted({c.__name__ for c in _WRAPPED_STRUCTURES.values()}))
        raise ValueError(
            f"{info_path}: {where} {what}. An export's schema names only Detectron2's export "
            f"schemas ({schemas}) and the structures they wrap ({structures}): this file was "
            f"not written by tools/export_model.py, or was changed. Export the model again."
        )

    if not isinstance(node, dict):
        refuse(f"is {node!r}, not a schema (a dict with '_target_')")
    target = node.get("_target_")
    if not isinstance(target, str) or target not in _SCHEMA_CLASSES:
        refuse(f"names {target!r} as '_target_', which is not allowed")
    cls = _SCHEMA_CLASSES[target]
    fields = {f.name for f in dataclasses.fields(cls)}
    if set(node) != fields | {"_target_"}:
        refuse(f"has the entries {sorted(node)}; {cls.__name__} takes {sorted(fields)}")
    class_name = node.get("class_name")
    if cls is TensorWrapSchema and not (
        isinstance(class_name, str) and class_name in _WRAPPED_STRUCTURES
    ):
        refuse(f"names {class_name!r} as 'class_name', which is not allowed")
    for key, kind in (("sizes", int), ("keys", str)):
        values = node.get(key, [])
        if not isinstance(values, list) or not all(type(v) is kind for v in values):
            refuse(f"has '{key}' {values!r}, not a list of {kind.__name__}")
    if "schemas" in node:
        if not isinstance(node["schemas"], list):
            refuse(f"has 'schemas' {node['schemas']!r}, not a list")
        for index, sub in enumerate(node["schemas"]):
            _check_schema(sub, info_path, f"{where}.schemas[{index}]")


def _build_schema(node):
    # A schema checked by _check_schema: only its allowed classes are called.
    kwargs = {k: v for k, v in node.items() if k != "_target_"}
    if "schemas" in kwargs:
        kwargs["schemas"] = [_build_schema(sub) for sub in kwargs["schemas"]]
    return _SCHEMA_CLASSES[node["_target_"]](**kwargs)


def load_outputs_schema(schema, info_path: str):
    """
    The outputs schema of an ``export_info.json`` (``info_path``, for errors), rebuilt
    with Detectron2's schema classes.

    Raises:
        ValueError: when it names any other class, anywhere in it; nothing is built then.
    """
    _check_schema(schema, info_path)
    return _build_schema(schema)


def read_export_info(export_dir: str) -> Dict:
    """
    The ``export_info.json`` of an export folder, as a dict.

    Raises:
        FileNotFoundError: the folder has none (it is not an export folder).
        ValueError: the file is not a JSON object; both name the file and the fix.
    """
    path = os.path.join(export_dir, INFO_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: {export_dir!r} is not an export folder of "
            f"tools/export_model.py (expected {INFO_FILE} and a model file)"
        )
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} cannot be read ({e}); export the model again.") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path} holds no JSON object; export the model again.")
    return info


def _output_names(schema, prefix: str = "") -> List[str]:
    # Names of the flattened outputs, from the schema: dict keys joined with ".", and
    # "image_size" for the size that ends an Instances.
    if isinstance(schema, DictSchema):
        names = []
        for key, sub in zip(schema.keys, schema.schemas):
            names += _output_names(sub, f"{prefix}{key}.")
        if isinstance(schema, InstancesSchema):
            names.append(f"{prefix}image_size")
        return names
    if isinstance(schema, ListSchema):
        names = []
        for index, sub in enumerate(schema.schemas):
            names += _output_names(sub, prefix if len(schema.schemas) == 1 else f"{prefix}{index}.")
        return names
    return [prefix.rstrip(".")]
