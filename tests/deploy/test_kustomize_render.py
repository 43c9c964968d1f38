"""The test renderer (kustomize_render.py) on small inputs: each feature, and refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kustomize_render import RenderError, UnsupportedFeature, render

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "web",
                        "args": ["--a", "--b"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "resources": {"limits": {"memory": "1Gi", "nvidia.com/gpu": 1}},
                    },
                    {"name": "sidecar", "image": "proxy:1.0"},
                ]
            },
        },
    },
}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis"}, "spec": {"ports": []}}
SCALED_OBJECT = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "web"},
    "spec": {"triggers": [{"metadata": {"address": "redis.NAMESPACE.svc.cluster.local:6379"}}]},
}


def _kustomization(directory: Path, objects: list[Any], **fields: Any) -> Path:
    """A directory with ``objects`` in resources.yaml and a kustomization listing it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "resources.yaml").write_text(yaml.safe_dump_all(objects))
    kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    kustomization.update(resources=["resources.yaml"], **fields)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return directory


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(obj for obj in objects if obj["kind"] == kind)


def test_strategic_merge_merges_maps_and_named_lists(tmp_path: Path) -> None:
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "args": ["--c"],  # a list of scalars: replaced
                            "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                            "resources": {"limits": {"memory": "2Gi"}, "requests": {"cpu": "1"}},
                        }
                    ],
                    "tolerations": [{"key": "gpu", "operator": "Exists"}],
                    "terminationGracePeriodSeconds": None,  # null deletes
                }
            }
        },
    }
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump(patch))
    [deployment] = render(_kustomization(tmp_path, [DEPLOYMENT], patches=[{"path": "patch.yaml"}]))
    pod = deployment["spec"]["template"]["spec"]
    main, sidecar = pod["containers"]
    assert main["image"] == "web" and sidecar == {"name": "sidecar", "image": "proxy:1.0"}
    assert main["args"] == ["--c"]
    assert main["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "20"},
        {"name": "C", "value": "3"},
    ]
    assert main["resources"] == {"limits": {"memory": "2Gi", "nvidia.com/gpu": 1}, "requests": {"cpu": "1"}}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert "terminationGracePeriodSeconds" not in pod
    assert DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["args"] == ["--a", "--b"], "input changed"


def test_json6902_remove_add_replace_with_escaped_pointers(tmp_path: Path) -> None:
    operations = [
        {"op": "remove", "path": "/spec/template/spec/containers/0/resources/limits/nvidia.com~1gpu"},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--c"},
        {"op": "add", "path": "/metadata/annotations", "value": {"a~b/c": "x"}},
        {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "proxy:2.0"},
    ]
    patch = {"target": {"kind": "Deployment", "name": "web"}, "patch": yaml.safe_dump(operations)}
    [deployment] = render(_kustomization(tmp_path, [DEPLOYMENT], patches=[patch]))
    main, sidecar = deployment["spec"]["template"]["spec"]["containers"]
    assert main["resources"]["limits"] == {"memory": "1Gi"}
    assert main["args"] == ["--a", "--b", "--c"]
    assert deployment["metadata"]["annotations"] == {"a~b/c": "x"}
    assert sidecar["image"] == "proxy:2.0"


def test_json6902_remove_of_a_missing_member_fails(tmp_path: Path) -> None:
    operations = [{"op": "remove", "path": "/spec/template/spec/containers/0/resources/limits/cpu"}]
    patch = {"target": {"kind": "Deployment"}, "patch": yaml.safe_dump(operations)}
    with pytest.raises(RenderError, match="no such member"):
        render(_kustomization(tmp_path, [DEPLOYMENT], patches=[patch]))


def test_replacement_with_delimiter_sees_the_namespace_of_the_same_kustomization(tmp_path: Path) -> None:
    replacement = {
        "source": {"kind": "Service", "name": "redis", "fieldPath": "metadata.namespace"},
        "targets": [
            {
                "select": {"kind": "ScaledObject", "name": "web"},
                "fieldPaths": ["spec.triggers.0.metadata.address"],
                "options": {"delimiter": ".", "index": 1},
            }
        ],
    }
    objects = render(
        _kustomization(tmp_path, [SERVICE, SCALED_OBJECT], namespace="prod", replacements=[replacement])
    )
    address = _by_kind(objects, "ScaledObject")["spec"]["triggers"][0]["metadata"]["address"]
    assert address == "redis.prod.svc.cluster.local:6379"

    replacement["targets"][0]["options"]["index"] = 9  # type: ignore[index]
    with pytest.raises(RenderError, match="no part 9"):
        render(
            _kustomization(tmp_path, [SERVICE, SCALED_OBJECT], namespace="prod", replacements=[replacement])
        )


def test_overlay_over_base_namespace_labels_and_images(tmp_path: Path) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}
    labels = [{"pairs": {"part-of": "demo"}, "includeSelectors": False}]
    _kustomization(tmp_path / "base", [DEPLOYMENT, namespace], labels=labels)
    overlay = _kustomization(
        tmp_path / "overlay",
        [],
        namespace="prod",
        images=[
            {"name": "web", "newName": "registry.example.com/web", "newTag": "1.2"},
            {"name": "proxy", "newName": "registry.example.com/proxy"},
        ],
    )
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    kustomization["resources"] = ["../base"]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))

    objects = render(overlay)
    deployment = _by_kind(objects, "Deployment")
    assert deployment["metadata"]["namespace"] == "prod"
    assert "namespace" not in _by_kind(objects, "Namespace")["metadata"], "cluster-scoped"
    assert deployment["metadata"]["labels"] == {"app": "web", "part-of": "demo"}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "web"}, "not the pods"
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "web"}}, "not the selectors"
    images = [container["image"] for container in deployment["spec"]["template"]["spec"]["containers"]]
    assert images == ["registry.example.com/web:1.2", "registry.example.com/proxy:1.0"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"commonLabels": {"a": "b"}}, "commonLabels"),
        ({"labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]}, "includeSelectors"),
        ({"images": [{"name": "web", "digest": "sha256:00"}]}, "digest"),
        (
            {"patches": [{"target": {"kind": "Deployment"}, "patch": "- op: move\n  from: /a\n  path: /b"}]},
            "move",
        ),
        (
            {"patches": [{"target": {"labelSelector": "app=web"}, "patch": "- op: remove\n  path: /a"}]},
            "labelSelector",
        ),
        ({"patches": [{"path": "p.yaml", "options": {"allowNameChange": True}}]}, "options"),
        ({"replacements": [{"path": "replacements.yaml"}]}, "path"),
    ],
    ids=[
        "commonLabels",
        "includeSelectors",
        "digest",
        "json-move",
        "labelSelector",
        "patch-options",
        "replacement-file",
    ],
)
def test_unsupported_kustomization_features_raise(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnsupportedFeature, match=message):
        render(_kustomization(tmp_path, [DEPLOYMENT], **fields))


@pytest.mark.parametrize(
    ("spec_patch", "message"),
    [
        ({"template": {"spec": {"containers": [{"name": "main", "$patch": "delete"}]}}}, r"\$patch"),
        (
            {"template": {"spec": {"containers": [{"name": "main", "ports": [{"containerPort": 1}]}]}}},
            "ports",
        ),
    ],
    ids=["directive", "ports-merge-key"],
)
def test_unsupported_strategic_merge_raises(tmp_path: Path, spec_patch: dict[str, Any], message: str) -> None:
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec_patch}
    (tmp_path / "patch.yaml").write_text(yaml.safe_dump(patch))
    with pytest.raises(UnsupportedFeature, match=message):
        render(_kustomization(tmp_path, [DEPLOYMENT], patches=[{"path": "patch.yaml"}]))


@pytest.mark.parametrize(
    "fields",
    [
        {"patches": [{"patch": yaml.safe_dump({**SERVICE, "metadata": {"name": "nope"}})}]},
        {"images": [{"name": "not-used", "newTag": "1"}]},
        {"replacements": [{"source": {"kind": "Secret"}, "targets": []}]},
    ],
    ids=["patch", "image", "replacement"],
)
def test_entries_that_select_nothing_raise(tmp_path: Path, fields: dict[str, Any]) -> None:
    with pytest.raises(RenderError, match="no"):
        render(_kustomization(tmp_path, [DEPLOYMENT, SERVICE], **fields))
