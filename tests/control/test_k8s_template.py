"""Job templates: placeholders filled in the parsed YAML, values never parsed as YAML, every mistake named.

Pure: no API server (the real dry run and create are in test_k8s_real.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from clustertop.control.kubernetes import (
    TemplateError,
    fill_template,
    load_template,
    parse_param_text,
    placeholders,
)

TEMPLATE = FIXTURE = Path(__file__).parent.parent / "fixtures" / "k8s" / "templates" / "train-job.yaml"


def test_fill_keeps_types_and_structure() -> None:
    t = load_template(str(TEMPLATE))
    assert placeholders(t) == {"name", "image", "gpus", "epochs", "parallelism"}
    body = fill_template(t, {"name": "resnet-7", "image": "pytorch/pytorch:2.3", "gpus": 2, "epochs": 90,
                             "parallelism": 1})
    assert body["metadata"]["name"] == "train-resnet-7"
    c = body["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "pytorch/pytorch:2.3"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2  # a whole-value placeholder keeps the int
    assert body["spec"]["parallelism"] == 1
    # args are strings to the API: a whole-value placeholder there is text.
    assert c["args"] == ["--epochs", "90", "--out", "/runs/resnet-7/model.pt"]
    assert t["metadata"]["name"] == "train-{{ name }}"  # the parsed template itself is untouched


def test_values_are_never_yaml() -> None:
    """A value that looks like YAML structure or a second document stays one string."""
    t = load_template(str(TEMPLATE))
    evil = "x\nspec:\n  hostPID: true\n---\nkind: Pod"
    body = fill_template(t, {"name": "a", "image": evil, "gpus": 1, "epochs": "{ hostNetwork: true }",
                             "parallelism": 1})
    c = body["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == evil
    assert c["args"][1] == "{ hostNetwork: true }"
    spec = body["spec"]["template"]["spec"]
    assert "hostPID" not in spec and "hostNetwork" not in spec
    # Round trip through YAML and JSON: still the same single scalars.
    again = yaml.safe_load(yaml.safe_dump(body))
    assert again == body


def test_parameter_mistakes_are_named() -> None:
    t = load_template(str(TEMPLATE))
    good = {"name": "a", "image": "i", "gpus": 1, "epochs": 1, "parallelism": 1}
    with pytest.raises(TemplateError, match="missing parameter.*gpus"):
        fill_template(t, {k: v for k, v in good.items() if k != "gpus"})
    with pytest.raises(TemplateError, match="unknown parameter.*colour"):
        fill_template(t, {**good, "colour": "red"})
    with pytest.raises(TemplateError, match="parameter image: must be a string, number or boolean"):
        fill_template(t, {**good, "image": ["a", "b"]})
    with pytest.raises(TemplateError, match="NUL"):
        fill_template(t, {**good, "image": "a\x00b"})


def test_template_mistakes_are_named(tmp_path: Path) -> None:
    def write(text: str) -> str:
        p = tmp_path / "t.yaml"
        p.write_text(text)
        return str(p)

    with pytest.raises(TemplateError, match="quote placeholders"):
        load_template(write("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ name }}\n"))
    with pytest.raises(TemplateError, match="exactly one YAML document, found 2"):
        load_template(write("a: 1\n---\nb: 2\n"))
    with pytest.raises(TemplateError, match="No such file"):
        load_template(str(tmp_path / "missing.yaml"))
    with pytest.raises(TemplateError, match="expected kind Job"):
        fill_template({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}, {})
    with pytest.raises(TemplateError, match="metadata.name or metadata.generateName"):
        fill_template({"apiVersion": "batch/v1", "kind": "Job", "metadata": {}}, {})
    with pytest.raises(TemplateError, match="placeholder in a key"):
        fill_template({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x", "labels": {"{{ k }}": "v"}}},
                      {"k": "a"})
    with pytest.raises(TemplateError, match="malformed placeholder"):
        fill_template({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x-{{ bad-name }}"}}, {})


def test_command_line_values_are_typed_narrowly() -> None:
    assert parse_param_text("3") == 3 and parse_param_text("-2") == -2 and parse_param_text("0.5") == 0.5
    assert parse_param_text("true") is True and parse_param_text("false") is False
    # YAML 1.1 would turn these into numbers, booleans or null; a name like "007" must stay text.
    for text in ("007", "1e3", "yes", "no", "null", "~", "0x1f", "[1, 2]", "a: b", ""):
        assert parse_param_text(text) == text
