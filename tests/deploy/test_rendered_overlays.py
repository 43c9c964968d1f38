"""The rendered Kubernetes overlays: schema-valid, and what an operator relies on holds.

Each overlay in deploy/k8s/overlays is rendered by ``kubectl kustomize`` (the kustomize that
``kubectl apply -k`` runs) and every object is validated against the Kubernetes OpenAPI schemas
that the ``kubernetes-validate`` package ships, in strict mode (unknown fields fail). The KEDA custom
resources have no schema there; a structural check of the fields we use stands in for one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from protocol.keys import CONSUMER_GROUP, jobs_stream_key
from tests.deploy import system_tools
from workers.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
KUBERNETES_VERSION = kubernetes_validate.latest_version()
NAMESPACE = "denoise"
REGISTRY = "registry.example.com/denoise/"
GPU = "nvidia.com/gpu"
KEDA_API = "keda.sh/v1alpha1"
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
# Fields of the KEDA specs (v2.15+) that a check below understands; a new one needs a check.
SCALED_OBJECT_FIELDS = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "minReplicaCount",
    "maxReplicaCount",
    "advanced",
    "triggers",
}
REDIS_STREAMS_METADATA = {
    "address",
    "databaseIndex",
    "stream",
    "consumerGroup",
    "lagCount",
    "activationLagCount",
    "pendingEntriesCount",
}
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

Obj = dict[str, Any]


@cache
def _rendered(name: str) -> list[Obj]:
    output = system_tools.run("kubectl", "kustomize", K8S / "overlays" / name)
    return [obj for obj in yaml.safe_load_all(output) if obj is not None]


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Obj]]:
    """(overlay name, its rendered objects); tests must not modify them."""
    return request.param, _rendered(request.param)


def _get(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod(workload: Obj) -> Obj:
    pod: Obj = workload["spec"]["template"]["spec"]
    return pod


def _container(workload: Obj, name: str) -> Obj:
    return next(c for c in _pod(workload)["containers"] if c["name"] == name)


def _workloads(objects: list[Obj]) -> Iterator[Obj]:
    yield from (obj for obj in objects if obj["kind"] in ("Deployment", "StatefulSet"))


def _config(objects: list[Obj]) -> dict[str, str]:
    data: dict[str, str] = _get(objects, "ConfigMap", "denoise-config")["data"]
    return data


def _selects(selector: dict[str, str], workload: Obj) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in selector.items())


# --------------------------------------------------------------------------- schemas
def test_overlays_exist() -> None:
    assert {"gpu", "cpu"} <= set(OVERLAYS)


def test_every_object_validates_against_the_kubernetes_schemas(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    assert len(objects) >= 10, f"{name}: rendered only {len(objects)} objects"
    problems = []
    for obj in objects:
        where = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            if obj["kind"] not in KEDA_KINDS:
                problems.append(
                    f"{where}: no schema for {obj['apiVersion']} in Kubernetes {KUBERNETES_VERSION}"
                )
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(part) for part in error.absolute_path)
            problems.append(f"{where} at {path}: {error.message}")
    assert not problems, "\n".join(problems)


def test_keda_scaled_object_structure(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    scaled = _get(objects, "ScaledObject", "worker")
    auth = _get(objects, "TriggerAuthentication", "redis")
    for obj in (scaled, auth):
        assert obj["apiVersion"] == KEDA_API
        assert DNS_LABEL.fullmatch(obj["metadata"]["name"])
    spec = scaled["spec"]
    assert set(spec) <= SCALED_OBJECT_FIELDS, f"unchecked fields {sorted(set(spec) - SCALED_OBJECT_FIELDS)}"
    target = spec["scaleTargetRef"]
    assert (
        target.get("kind", "Deployment") == "Deployment" and target.get("apiVersion", "apps/v1") == "apps/v1"
    )
    _get(objects, "Deployment", target["name"])
    for field in ("pollingInterval", "cooldownPeriod", "initialCooldownPeriod", "maxReplicaCount"):
        assert isinstance(spec[field], int) and spec[field] > 0, field
    assert (
        isinstance(spec["minReplicaCount"], int) and 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    )
    assert set(spec["advanced"]) == {"horizontalPodAutoscalerConfig"}
    # KEDA hands `behavior` to the HPA it creates: check it with the HPA's own schema.
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keda-hpa-worker"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target["name"]},
            "maxReplicas": spec["maxReplicaCount"],
            **spec["advanced"]["horizontalPodAutoscalerConfig"],
        },
    }
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)

    models = _config(objects)["DENOISE_MODELS"].split(",")
    assert spec["triggers"], "no triggers"
    measures: dict[str, set[str]] = {}
    for trigger in spec["triggers"]:
        assert set(trigger) == {"type", "authenticationRef", "metadata"}
        assert trigger["type"] == "redis-streams"
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        metadata = trigger["metadata"]
        assert set(metadata) <= REDIS_STREAMS_METADATA, f"unchecked {set(metadata) - REDIS_STREAMS_METADATA}"
        # KEDA's trigger metadata is map[string]string: a YAML number fails at admission.
        assert all(isinstance(value, str) for value in metadata.values()), metadata
        assert metadata["consumerGroup"] == CONSUMER_GROUP
        assert ("lagCount" in metadata) != ("pendingEntriesCount" in metadata), "one measure per trigger"
        measure = "lagCount" if "lagCount" in metadata else "pendingEntriesCount"
        measures.setdefault(metadata["stream"], set()).add(measure)
    # a trigger watches one stream: each served model's stream has both measures, no other stream any
    assert measures == {jobs_stream_key(model): {"lagCount", "pendingEntriesCount"} for model in models}
    assert auth["spec"] == {
        "secretTargetRef": [{"parameter": "password", "name": "denoise-redis", "key": "password"}]
    }


# --------------------------------------------------------------------------- what operators rely on
def test_base_labels_on_every_object(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    base = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    pairs = {key: value for label in base["labels"] for key, value in label["pairs"].items()}
    wrong = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if not pairs.items() <= o["metadata"].get("labels", {}).items()
    ]
    assert not wrong, f"{name}: without {pairs}: {wrong}"


def test_namespace_on_every_object(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    wrong = [
        f"{o['kind']}/{o['metadata']['name']}" for o in objects if o["metadata"].get("namespace") != NAMESPACE
    ]
    assert not wrong, f"{name}: not in namespace {NAMESPACE}: {wrong}"


def test_images_point_at_the_registry(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    kustomization = yaml.safe_load((K8S / "overlays" / name / "kustomization.yaml").read_text())
    expected = {f"{image['newName']}:{image['newTag']}" for image in kustomization["images"]}
    ours = {_container(_get(objects, "Deployment", app), app)["image"] for app in ("api", "worker")}
    assert ours == expected
    assert all(image.startswith(REGISTRY) for image in ours)
    for workload in _workloads(objects):
        for container in _pod(workload)["containers"]:
            image = container["image"]
            assert re.search(r":[\w.-]+$", image) and not image.endswith(":latest"), f"{image} is not pinned"


def test_gpu_worker_requests_a_gpu_and_tolerates_the_taint() -> None:
    objects = _rendered("gpu")
    worker = _get(objects, "Deployment", "worker")
    assert _container(worker, "worker")["resources"]["limits"][GPU] == 1
    tolerations = _pod(worker).get("tolerations", [])
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert _config(objects)["DENOISE_DEVICE"] == "cuda"


def test_cpu_worker_has_no_gpu() -> None:
    objects = _rendered("cpu")
    worker = _get(objects, "Deployment", "worker")
    resources = _container(worker, "worker")["resources"]
    assert GPU not in resources.get("limits", {}) and GPU not in resources.get("requests", {})
    assert not _pod(worker).get("tolerations")
    config = _config(objects)
    assert config["DENOISE_DEVICE"] == "cpu"
    assert int(config["DENOISE_TORCH_THREADS"]) == int(resources["limits"]["cpu"]), "one thread per core"


def test_keda_address_names_the_namespace(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    redis = _get(objects, "Service", "redis")
    port = redis["spec"]["ports"][0]["port"]
    for trigger in _get(objects, "ScaledObject", "worker")["spec"]["triggers"]:
        assert trigger["metadata"]["address"] == f"redis.{NAMESPACE}.svc.cluster.local:{port}"


def test_worker_grace_period_exceeds_its_shutdown_grace(overlay: tuple[str, list[Obj]]) -> None:
    """The worker must reach the end of its own shutdown grace before the kubelet kills it."""
    _, objects = overlay
    default = WorkerSettings.model_fields["shutdown_grace_s"].default
    configured = float(_config(objects).get("DENOISE_SHUTDOWN_GRACE_S", default))
    pod_grace = _pod(_get(objects, "Deployment", "worker"))["terminationGracePeriodSeconds"]
    assert pod_grace > default, f"terminationGracePeriodSeconds {pod_grace} <= shutdown_grace_s default"
    assert pod_grace > configured, f"terminationGracePeriodSeconds {pod_grace} <= DENOISE_SHUTDOWN_GRACE_S"


def test_api_and_worker_have_readiness_probes(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    for app in ("api", "worker"):
        assert "readinessProbe" in _container(_get(objects, "Deployment", app), app), app
    assert "startupProbe" in _container(_get(objects, "Deployment", "worker"), "worker"), "model load"


def test_disruption_budgets_and_network_policy_select_our_pods(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    for app in ("api", "worker"):
        budget = _get(objects, "PodDisruptionBudget", app)
        assert _selects(budget["spec"]["selector"]["matchLabels"], _get(objects, "Deployment", app))
    policy = _get(objects, "NetworkPolicy", "redis")["spec"]
    redis = _get(objects, "StatefulSet", "redis")
    assert _selects(policy["podSelector"]["matchLabels"], redis)
    [rule] = policy["ingress"]
    peers = [peer["podSelector"]["matchLabels"] for peer in rule["from"] if "namespaceSelector" not in peer]
    for app in ("api", "worker"):
        assert any(_selects(peer, _get(objects, "Deployment", app)) for peer in peers), (
            f"{app} cannot reach Redis"
        )
    assert [port["port"] for port in rule["ports"]] == [
        _container(redis, "redis")["ports"][0]["containerPort"]
    ]


def test_services_select_pods_with_their_target_ports(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    for service in (obj for obj in objects if obj["kind"] == "Service"):
        backends = [w for w in _workloads(objects) if _selects(service["spec"]["selector"], w)]
        assert len(backends) == 1, f"Service {service['metadata']['name']} selects {len(backends)} workloads"
        port_names = {p.get("name") for c in _pod(backends[0])["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{service['metadata']['name']}: {port['targetPort']}"


def test_referenced_config_and_secrets_are_the_documented_ones(overlay: tuple[str, list[Obj]]) -> None:
    """ConfigMaps come with the overlay; the only Secret is the one secret.example.yaml documents."""
    _, objects = overlay
    example = yaml.safe_load((K8S / "base" / "secret.example.yaml").read_text())
    secret_keys = {(example["metadata"]["name"], key) for key in example["stringData"]}
    config_maps = {obj["metadata"]["name"] for obj in objects if obj["kind"] == "ConfigMap"}
    for workload in _workloads(objects):
        for container in _pod(workload)["containers"]:
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert (ref["name"], ref["key"]) in secret_keys, f"{variable['name']}: {ref}"


def test_metrics_ports_agree(overlay: tuple[str, list[Obj]]) -> None:
    """prometheus.io/port, the container port and DENOISE_METRICS_PORT name the same port."""
    _, objects = overlay
    for app, port_name in (("api", "http"), ("worker", "metrics")):
        deployment = _get(objects, "Deployment", app)
        ports = {p["name"]: p["containerPort"] for p in _container(deployment, app)["ports"]}
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == ports[port_name], app
    worker_ports = {
        p["name"]: p["containerPort"]
        for p in _container(_get(objects, "Deployment", "worker"), "worker")["ports"]
    }
    assert int(_config(objects)["DENOISE_METRICS_PORT"]) == worker_ports["metrics"]
