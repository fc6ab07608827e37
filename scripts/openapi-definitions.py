#!/usr/bin/env python3
"""Regenerates src/api/openapi/definitions.json.gz: the schema definitions of the
Kubernetes API types, in the form of upstream's swagger.json `definitions`.

Upstream's own OpenAPI documents (kubernetes/kubernetes api/openapi-spec, Apache-2.0)
are not reachable from our build machines, which only reach package registries. The
same definitions are published on PyPI inside `kubernetes-validate` (Apache-2.0), as
a JSON Schema (draft 2020-12) conversion of upstream's swagger definitions. This script
undoes that conversion: nullable `type` lists become the single type, `#/$defs/` refs
become `#/definitions/` refs, the one-value `enum` it adds to apiVersion and kind is
dropped, and IntOrString / Quantity get back their upstream string forms.

Usage: scripts/openapi-definitions.py [KUBERNETES_VERSION]   (default 1.32.0)
Needs python3 and pip (it downloads the wheel into a temporary directory).
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zipfile

VERSION = sys.argv[1] if len(sys.argv) > 1 else "1.32.0"
WHEEL_VERSION = "1.37.0"
OUT = os.path.join(os.path.dirname(__file__), "..", "src", "api", "openapi", "definitions.json.gz")

SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "type": "string",
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.\n\nThe serialization format is:\n\n``` <quantity>        ::= <signedNumber><suffix>\n\n\t(Note that <suffix> may be empty, from the \"\" case in <decimalSI>.)\n\n<digit>           ::= 0 | 1 | ... | 9 <digits>          ::= <digit> | <digit><digits> <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits> <sign>            ::= \"+\" | \"-\" <signedNumber>    ::= <number> | <sign><number> <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI> <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei\n\n\t(International System of units; See: http://physics.nist.gov/cuu/Units/binary.html)\n\n<decimalSI>       ::= m | \"\" | k | M | G | T | P | E\n\n\t(Note that 1024 = 1Ki but 1000 = 1k; I didn't choose the capitalization.)\n\n<decimalExponent> ::= \"e\" <signedNumber> | \"E\" <signedNumber> ```",
        "type": "string",
    },
}


def unconvert(schema, prop_name=None):
    if isinstance(schema, list):
        return [unconvert(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            out[key] = kinds[0] if len(kinds) == 1 else kinds
        elif key == "$ref":
            out[key] = value.replace("#/$defs/", "#/definitions/")
        elif key == "enum" and prop_name in ("apiVersion", "kind") and len(value) == 1:
            continue
        elif key == "properties":
            out[key] = {name: unconvert(s, name) for name, s in value.items()}
        else:
            out[key] = unconvert(value)
    return out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             f"kubernetes-validate=={WHEEL_VERSION}", "-d", tmp],
            check=True,
        )
        wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
        member = f"kubernetes_validate/kubernetes-json-schema/v{VERSION}-local/_definitions.json"
        with zipfile.ZipFile(wheel) as z:
            source = json.loads(z.read(member))
    definitions = {name: unconvert(s) for name, s in source["$defs"].items()}
    definitions.update(SPECIAL)
    data = json.dumps(
        {"kubernetesVersion": VERSION, "definitions": definitions},
        sort_keys=True, separators=(",", ":"),
    ).encode()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
            gz.write(data)
    print(f"{OUT}: {len(definitions)} definitions, {len(data)} bytes, {os.path.getsize(OUT)} compressed")


if __name__ == "__main__":
    main()
