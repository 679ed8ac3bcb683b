"""One torch-free definition of every SPARTAN Edge file format and document (docs/formats.md).

Imports only the standard library, numpy and safetensors, so the server, the device client and the exporter share
it, and the native/Kotlin readers are tested against the same conformance vectors (tests/conformance/).

    memory          task memory file (memories/<task>.safetensors): constants, reader, writer
    artifact        task artifact header (task.safetensors written by pipeline): constants, header reader
    backbone        backbone bundle description (POST /backbone/<target>, the catalog's backbone entries)
    dist_manifest   the export's dist/manifest.json
    catalog         the server's GET /manifest document (what a device reads)
    cache_state     the device cache's state.json
    safetensors_file  bounds-checked safetensors header/payload parsing with error codes
    names, digest, atomic   name and hex-digest validation (whole-string), sha256 of a file, atomic writes
"""

from .errors import FormatError

__all__ = ["FormatError"]
