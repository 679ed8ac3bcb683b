"""iOS: convert the same exported graph to a Core ML `mlprogram` (fp16 compute) and zip the .mlpackage.

Converted from the torch.export program (not a TorchScript trace) so the dynamic sequence length is the one
torch.export proved. That converter lower-cases input names and auto-names the output, so the features are renamed
back to the contract's names (input_ids, attention_mask, P, K, Vt, head_weight, head_bias -> logits).
"""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
from torch.export import ExportedProgram

from .model import INPUT_NAMES

MIN_IOS = "iOS17"


def convert(ep: ExportedProgram, package: Path, input_names: tuple[str, ...] = INPUT_NAMES) -> Path:
    import coremltools as ct

    ml = ct.convert(ep.run_decompositions({}), convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                    minimum_deployment_target=getattr(ct.target, MIN_IOS))
    spec = ml.get_spec()
    for name in input_names:
        have = next(i.name for i in spec.description.input if i.name.lower() == name.lower())
        if have != name:
            ct.utils.rename_feature(spec, have, name)
    if spec.description.output[0].name != "logits":
        ct.utils.rename_feature(spec, spec.description.output[0].name, "logits")
    ct.models.MLModel(spec, weights_dir=ml.weights_dir, skip_model_load=True).save(str(package))
    return package


def zip_package(package: Path, zip_path: Path) -> Path:
    """One downloadable file; entries are stored (fp16 weights barely compress) under `<name>.mlpackage/`."""
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for f in sorted(package.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(package.parent).as_posix())
    return zip_path


def package_spec(package: str | Path) -> dict:
    """Inputs, outputs (name, shape or range, dtype) and op counts of a saved .mlpackage; works without Core ML."""
    import coremltools as ct

    spec = ct.models.MLModel(str(package), skip_model_load=True).get_spec()

    def feature(f) -> dict:
        t = f.type.multiArrayType
        ranges = [[r.lowerBound, r.upperBound] for r in t.shapeRange.sizeRanges]
        dtype = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(t.dataType).lower()
        return {"name": f.name, "shape": list(t.shape), "ranges": ranges or None, "dtype": dtype}

    ops = Counter(op.type for fn in spec.mlProgram.functions.values()
                  for block in fn.block_specializations.values() for op in block.operations)
    return {"inputs": [feature(f) for f in spec.description.input],
            "outputs": [feature(f) for f in spec.description.output], "ops": dict(ops)}


def predict(package: str | Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Run the package (macOS only: Core ML has no runtime elsewhere)."""
    import coremltools as ct

    model = ct.models.MLModel(str(package), compute_units=ct.ComputeUnit.CPU_ONLY)
    return np.asarray(model.predict(inputs)["logits"], dtype=np.float32)


def input_spec(android_spec: list[dict]) -> list[dict]:
    """Same inputs as Android; Core ML takes int32 token ids."""
    return [{**s, "dtype": "int32"} if s["dtype"] == "int64" else s for s in android_spec]
