"""deploy/kubernetes/ rendered as ``kubectl apply -k`` would, and the schemas it is checked
against (tests/unit/test_kubernetes_manifests.py).

There is no kustomize binary here, and kustomization.yaml uses two of its features only:
``resources`` (files applied as they are) and one ``configMapGenerator`` (config.yaml as a
ConfigMap, without a name hash). ``render`` does exactly those and refuses any other field,
so a kustomization that grows a feature this renderer does not know fails the tests instead
of being checked as something it is not.

KEDA's kinds are checked against the schemas of its CRDs, kept in tests/unit/schemas/keda/
(each file's ``$comment`` says which release they come from). The API server prunes the
fields a CRD's schema does not declare, silently: ``strict_crd_schema`` makes such a field
an error instead, so a misspelt ScaledObject field fails here and not, unnoticed, in a
cluster.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
NOT_IN_KUSTOMIZATION = ("secret.example.yaml", "ingress.example.yaml")  # applied by hand (their comments)

_KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "configMapGenerator"}
_GENERATOR_FIELDS = {"name", "namespace", "files", "options"}
_GENERATOR_OPTIONS = {"disableNameSuffixHash", "labels"}
_KEDA_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication-keda-v1alpha1.json",
}


def documents(path: Path) -> list[dict[str, Any]]:
    """The objects of one YAML file (empty documents, such as a trailing ``---``, left out)."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text(encoding="utf-8"))


def render() -> list[dict[str, Any]]:
    """Every object ``kubectl apply -k deploy/kubernetes`` would apply, in order."""
    spec = kustomization()
    unknown = set(spec) - _KUSTOMIZATION_FIELDS
    assert not unknown, f"kustomization.yaml uses {sorted(unknown)}, which render() does not do"
    assert spec["kind"] == "Kustomization"
    objects = [doc for name in spec["resources"] for doc in documents(MANIFESTS / name)]
    for generator in spec.get("configMapGenerator", []):
        assert set(generator) <= _GENERATOR_FIELDS, generator
        options = generator.get("options", {})
        assert set(options) <= _GENERATOR_OPTIONS, options
        # With a hash suffix the name would no longer be the one the pods mount.
        assert options.get("disableNameSuffixHash") is True, "the ConfigMap's name must stay fixed"
        metadata = {"name": generator["name"]}
        if "namespace" in generator:
            metadata["namespace"] = generator["namespace"]
        if options.get("labels"):
            metadata["labels"] = dict(options["labels"])
        data = {}
        for entry in generator["files"]:
            key, _, file = entry.rpartition("=")  # "key=file" or "file" (the key is its base name)
            data[key or Path(file).name] = (MANIFESTS / file).read_text(encoding="utf-8")
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    return objects


def all_objects() -> list[dict[str, Any]]:
    """The rendered objects and those of the files applied by hand."""
    return render() + [doc for name in NOT_IN_KUSTOMIZATION for doc in documents(MANIFESTS / name)]


def keda_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    name = _KEDA_SCHEMAS.get((api_version, kind))
    if name is None:
        return None
    schema = json.loads((SCHEMAS / "keda" / name).read_text(encoding="utf-8"))
    schema.pop("$comment", None)
    return strict_crd_schema(schema)


def strict_crd_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every object that declares its properties closed to others, as the API
    server's pruning would silently drop them (unless the schema keeps unknown fields)."""
    closed = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(closed)
    return closed


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def pod_templates(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, its pod template) of every Deployment and StatefulSet."""
    return [(o, o["spec"]["template"]) for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def container_env(container: dict[str, Any], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment a container starts with: ``envFrom`` Secrets, then ``env`` entries in
    order, each ``$(VAR)`` expanded from those before it, as the kubelet does."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(secrets[source["secretRef"]["name"]])
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            env[entry["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                        lambda m: env.get(m.group(1), m.group(0)), entry["value"])
    return env


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (``320Mi``, ``1Gi``, ``500M``) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity)).groups()
    return int(float(number) * units[unit])


def quantity_cores(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)
