"""The client generated from the served schema by datamodel-code-generator, and parsing answers with it
(tests/test_generated_client.py parses real answers, tests/test_schema_truth.py docs/api.md's examples)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from pydantic import TypeAdapter


def generate(out: Path):
    """(schema, models module): the schema as /api/schema/?format=json serves it, and the models generated from it."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    schema = SchemaGenerator().get_schema(request=None, public=True)
    source = out / "openapi.json"
    source.write_bytes(OpenApiJsonRenderer().render(schema))
    target = out / "api_models.py"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("datamodel-codegen")),
            "--input",
            str(source),
            "--input-file-type",
            "openapi",
            "--output",
            str(target),
            "--output-model-type",
            "pydantic_v2.BaseModel",
            "--target-python-version",
            "3.11",
            "--extra-fields",
            "forbid",  # a field the answer holds but the schema does not declare is an error
            "--strict-nullable",  # null only where the schema says nullable
            "--use-standard-collections",
            "--disable-timestamp",
            # an email is read as text (pydantic's EmailStr needs another package, email-validator)
            "--type-mappings",
            "string+email=string",
        ],
        check=True,
        capture_output=True,
    )
    name = f"api_models_{out.name}"
    spec = importlib.util.spec_from_file_location(name, target)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return json.loads(source.read_text()), module


def _model_for(api, schema: dict):
    _, models = api
    if "$ref" in schema:
        return getattr(models, schema["$ref"].rsplit("/", 1)[1])
    if schema.get("type") == "array":
        return list[_model_for(api, schema["items"])]
    raise AssertionError(f"an answer without a named schema: {schema}")


def parse_body(api, method: str, path: str, status: int, body: bytes):
    """`body` parsed, strictly, by the generated model the operation declares for `status`."""
    spec, _ = api
    operation = spec["paths"][path][method]
    declared = operation["responses"].get(str(status))
    assert declared, f"{method.upper()} {path} answered {status}, which the schema does not declare"
    assert "content" in declared, f"{method.upper()} {path} {status}: no body declared"
    model = _model_for(api, declared["content"]["application/json"]["schema"])
    return TypeAdapter(model).validate_json(body, strict=True)
