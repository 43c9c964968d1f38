"""A small kustomize for the tests: exactly the features deploy/k8s uses, and nothing silently.

The schema tests need the rendered overlays (a strategic-merge patch file is partial and fails
validation on its own), and no kustomize binary can be installed where the tests run. This
renders a kustomization the way ``kustomize build`` does for the features below, and raises
:class:`UnsupportedFeature` for anything else, so that a new kustomization field, patch directive
or option fails the tests instead of being ignored.

Supported, applied in kustomize's order (patches, namespace, labels, images, replacements):

- ``resources``: relative YAML files (several documents each) and directories holding a
  kustomization.yaml (``../../base``), rendered first; no remote URLs.
- ``patches`` with ``path:`` or inline ``patch:`` and an optional ``target:``. A mapping is a
  strategic-merge patch (maps merge recursively, ``null`` deletes a key, lists of maps that all
  carry ``name`` merge by name, other lists replace); without a target it applies to the object of
  its own apiVersion group, kind and name. A list is a JSON6902 patch (``add``, ``remove``,
  ``replace``; JSON pointers with ``~0``/``~1`` escapes and ``-`` to append) and needs a target.
- ``namespace``: set on every namespaced object.
- ``labels``: ``pairs`` with ``includeSelectors: false``, added to ``metadata.labels`` only.
- ``images``: ``name`` with ``newName`` and/or ``newTag``, in every ``containers`` and
  ``initContainers`` list.
- ``replacements``: one source field (``fieldPath``, default ``metadata.name``) copied into target
  ``fieldPaths`` (dotted, numeric list indices), optionally into one ``options.delimiter``-split
  part at ``options.index``.

Selectors (patch targets, replacement source and ``select``) match ``group``, ``version``,
``kind``, ``name`` and ``namespace`` (``kind`` and ``name`` as anchored regular expressions, as
kustomize does). Stricter than kustomize on purpose: a patch, image or replacement target that
selects nothing raises too, since it is a typo in our files.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]


class RenderError(Exception):
    """The kustomization cannot be rendered (a missing file, a selector that matches nothing)."""


class UnsupportedFeature(RenderError):
    """The kustomization uses something this renderer does not implement."""


TRANSFORMER_FIELDS = ("patches", "namespace", "labels", "images", "replacements")  # applied in this order
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", *TRANSFORMER_FIELDS}
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SELECTOR_FIELDS = {"group", "version", "kind", "name", "namespace"}
# Kinds the namespace transformer leaves alone (kustomize knows more; these are the likely ones).
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "PriorityClass", "StorageClass", "PersistentVolume"}
CLUSTER_SCOPED_KINDS |= {"CustomResourceDefinition", "ClusterTriggerAuthentication"}
# Kinds whose other fields kustomize also rewrites for a namespace (subjects, webhook services).
NAMESPACE_REWRITING_KINDS = {"RoleBinding", "ClusterRoleBinding", "APIService"}
NAMESPACE_REWRITING_KINDS |= {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
# Lists whose Kubernetes merge key is not `name`: strategic merge would pair their items
# differently from the by-name rule here, so a patch that touches them is refused.
OTHER_MERGE_KEYS = {
    "ports": "containerPort (containers) or port (Services)",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}


# --------------------------------------------------------------------------- entry point
def render(directory: Path) -> list[Obj]:
    """Render the kustomization in ``directory`` like ``kustomize build``.

    Returns:
        The rendered objects, in resource order.
    """
    kustomization = _load_kustomization(directory)
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        objects.extend(_load_resource(directory, entry))
    _check_unique(objects, directory)
    for patch in kustomization.get("patches", []):
        _apply_patch(objects, directory, patch)
    if "namespace" in kustomization:
        _set_namespace(objects, kustomization["namespace"])
    for label in kustomization.get("labels", []):
        _add_labels(objects, label)
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    for replacement in kustomization.get("replacements", []):
        _replace(objects, replacement)
    return objects


def _load_kustomization(directory: Path) -> Obj:
    path = next((directory / name for name in KUSTOMIZATION_FILES if (directory / name).is_file()), None)
    if path is None:
        raise RenderError(f"{directory} holds no kustomization file")
    data = yaml.safe_load(path.read_text()) or {}
    if data.get("kind", "Kustomization") != "Kustomization":
        raise UnsupportedFeature(f"{path}: kind {data['kind']!r} (supported: Kustomization)")
    unknown = sorted(set(data) - KUSTOMIZATION_FIELDS)
    if unknown:
        raise UnsupportedFeature(f"{path}: fields {unknown} (supported: {sorted(KUSTOMIZATION_FIELDS)})")
    return data


def _load_resource(directory: Path, entry: str) -> list[Obj]:
    if "://" in entry or entry.startswith(("github.com/", "git@")):
        raise UnsupportedFeature(f"remote resource {entry!r}")
    path = (directory / entry).resolve()
    if path.is_dir():
        return render(path)
    if not path.is_file():
        raise RenderError(f"{directory}: resource {entry!r} does not exist")
    objects = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    for obj in objects:
        if not isinstance(obj, dict) or "kind" not in obj or "metadata" not in obj:
            raise RenderError(f"{path}: a document is not a Kubernetes object")
    return objects


def _check_unique(objects: list[Obj], directory: Path) -> None:
    ids = [_id(obj) for obj in objects]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise RenderError(f"{directory}: objects defined twice: {repeated}")


def _id(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{obj.get('apiVersion')}/{obj['kind']}/{meta.get('namespace', '~')}/{meta['name']}"


# --------------------------------------------------------------------------- selection
def _group_version(obj: Obj) -> tuple[str, str]:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    return group, version


def _matches(obj: Obj, selector: Obj) -> bool:
    unknown = sorted(set(selector) - SELECTOR_FIELDS)
    if unknown:
        raise UnsupportedFeature(f"selector fields {unknown} (supported: {sorted(SELECTOR_FIELDS)})")
    group, version = _group_version(obj)
    actual = {
        "group": group,
        "version": version,
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"].get("namespace", ""),
    }
    for key, wanted in selector.items():
        if key in ("kind", "name"):
            if not re.fullmatch(str(wanted), actual[key]):
                return False
        elif actual[key] != wanted:
            return False
    return True


def _select(objects: list[Obj], selector: Obj, what: str) -> list[Obj]:
    selected = [obj for obj in objects if _matches(obj, selector)]
    if not selected:
        raise RenderError(f"{what}: {selector} selects no object")
    return selected


# --------------------------------------------------------------------------- patches
def _apply_patch(objects: list[Obj], directory: Path, entry: Obj) -> None:
    unknown = sorted(set(entry) - {"path", "patch", "target"})
    if unknown:
        raise UnsupportedFeature(f"patch fields {unknown} (supported: path, patch, target)")
    if ("path" in entry) == ("patch" in entry):
        raise RenderError(f"a patch needs exactly one of path and patch: {entry}")
    text = (directory / entry["path"]).read_text() if "path" in entry else entry["patch"]
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    target = entry.get("target")
    if len(documents) == 1 and isinstance(documents[0], list):
        if target is None:
            raise RenderError(f"a JSON6902 patch needs a target: {entry}")
        for obj in _select(objects, target, "JSON6902 patch target"):
            for operation in documents[0]:
                _json_patch(obj, operation)
        return
    for patch in documents:
        if not isinstance(patch, dict):
            raise RenderError(f"a patch is neither a mapping nor a list of operations: {entry}")
        selector = target or _own_selector(patch)
        for obj in _select(objects, selector, "strategic-merge patch"):
            merged = _merge(obj, patch, path="")
            obj.clear()
            obj.update(merged)


def _own_selector(patch: Obj) -> Obj:
    group, version = _group_version(patch)
    selector = {"group": group, "version": version, "kind": patch["kind"]}
    selector["name"] = re.escape(patch["metadata"]["name"])
    if "namespace" in patch["metadata"]:
        selector["namespace"] = patch["metadata"]["namespace"]
    return selector


def _merge(base: Any, patch: Any, path: str) -> Any:
    """Strategic merge of ``patch`` into a copy of ``base`` (see the module docstring)."""
    if isinstance(patch, dict):
        directives = sorted(key for key in patch if str(key).startswith("$"))
        if directives:
            raise UnsupportedFeature(f"strategic-merge directives {directives} at {path or '/'}")
        merged = copy.deepcopy(base) if isinstance(base, dict) else {}
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in OTHER_MERGE_KEYS and isinstance(value, list):
                raise UnsupportedFeature(
                    f"patching {path}/{key}: Kubernetes merges it by {OTHER_MERGE_KEYS[key]}, not by name"
                )
            else:
                merged[key] = _merge(merged.get(key), value, f"{path}/{key}")
        return merged
    if isinstance(patch, list) and isinstance(base, list) and _named(base) and _named(patch):
        merged_list = copy.deepcopy(base)
        index = {item["name"]: i for i, item in enumerate(merged_list)}
        for item in patch:
            if item["name"] in index:
                position = index[item["name"]]
                merged_list[position] = _merge(merged_list[position], item, f"{path}/{item['name']}")
            else:
                merged_list.append(_merge(None, item, f"{path}/{item['name']}"))
        return merged_list
    if isinstance(patch, list):
        return [_merge(None, item, f"{path}/{i}") for i, item in enumerate(patch)]
    return patch


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(item, dict) and "name" in item for item in items)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise RenderError(f"JSON pointer {path!r} does not start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _json_patch(obj: Obj, operation: Obj) -> None:
    op = operation.get("op")
    if op not in ("add", "remove", "replace"):
        raise UnsupportedFeature(f"JSON6902 op {op!r} (supported: add, remove, replace)")
    *parents, last = _pointer(operation["path"])
    where = f"{_id(obj)} {operation['path']}"
    container: Any = obj
    position: int | str
    for part in parents:
        try:
            container = container[int(part)] if isinstance(container, list) else container[part]
        except (KeyError, IndexError, ValueError) as error:
            raise RenderError(f"{op} {where}: no {part!r} on the way") from error
    if isinstance(container, list):
        if op == "add":
            position = len(container) if last == "-" else int(last)
            if not 0 <= position <= len(container):
                raise RenderError(f"add {where}: index out of range")
            container.insert(position, copy.deepcopy(operation["value"]))
            return
        position = int(last)
        if not 0 <= position < len(container):
            raise RenderError(f"{op} {where}: index out of range")
    elif isinstance(container, dict):
        position = last
        if op != "add" and last not in container:
            raise RenderError(f"{op} {where}: no such member")
    else:
        raise RenderError(f"{op} {where}: the parent is not a list or a mapping")
    if op == "remove":
        del container[position]
    else:
        container[position] = copy.deepcopy(operation["value"])


# --------------------------------------------------------------------------- namespace, labels
def _set_namespace(objects: list[Obj], namespace: str) -> None:
    for obj in objects:
        if obj["kind"] in NAMESPACE_REWRITING_KINDS:
            raise UnsupportedFeature(f"namespace for {obj['kind']} (kustomize rewrites more fields)")
        if obj["kind"] not in CLUSTER_SCOPED_KINDS:
            obj["metadata"]["namespace"] = namespace


def _add_labels(objects: list[Obj], entry: Obj) -> None:
    unknown = sorted(set(entry) - {"pairs", "includeSelectors"})
    if unknown or entry.get("includeSelectors", False) is not False:
        raise UnsupportedFeature(f"labels {entry} (supported: pairs with includeSelectors: false)")
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(
            {key: str(value) for key, value in entry["pairs"].items()}
        )


# --------------------------------------------------------------------------- images
def _image_name(image: str) -> str:
    """``registry:5000/a/b:tag@sha256:...`` -> ``registry:5000/a/b``."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > last_slash else name


def _containers(node: Any) -> list[Obj]:
    """Every item of every ``containers``/``initContainers`` list in an object."""
    found: list[Obj] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found.extend(item for item in value if isinstance(item, dict))
            else:
                found.extend(_containers(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_containers(item))
    return found


def _set_image(objects: list[Obj], entry: Obj) -> None:
    unknown = sorted(set(entry) - {"name", "newName", "newTag"})
    if unknown:
        raise UnsupportedFeature(f"image fields {unknown} (supported: name, newName, newTag)")
    matched = 0
    for container in _containers(objects):
        image = str(container.get("image", ""))
        if _image_name(image) != entry["name"]:
            continue
        old_tag = image.removeprefix(_image_name(image))
        tag = f":{entry['newTag']}" if "newTag" in entry else old_tag
        container["image"] = f"{entry.get('newName', entry['name'])}{tag}"
        matched += 1
    if not matched:
        raise RenderError(f"images: no container uses {entry['name']!r}")


# --------------------------------------------------------------------------- replacements
def _field_parts(field_path: str) -> list[str]:
    if any(ch in field_path for ch in "[]*"):
        raise UnsupportedFeature(f"fieldPath {field_path!r} (supported: dotted names and list indices)")
    return field_path.split(".")


def _get_field(obj: Obj, field_path: str) -> Any:
    node: Any = obj
    for part in _field_parts(field_path):
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError) as error:
            raise RenderError(f"{_id(obj)} has no {field_path}") from error
    return node


def _set_field(obj: Obj, field_path: str, value: Any) -> None:
    *parents, last = _field_parts(field_path)
    parent = _get_field(obj, ".".join(parents)) if parents else obj
    key: Any = int(last) if isinstance(parent, list) else last
    if isinstance(parent, dict) and last not in parent:
        raise RenderError(f"{_id(obj)} has no {field_path} (options.create is not supported)")
    parent[key] = value


def _check_options(options: Obj, where: str) -> tuple[str | None, int]:
    unknown = sorted(set(options) - {"delimiter", "index"})
    if unknown:
        raise UnsupportedFeature(f"{where} options {unknown} (supported: delimiter, index)")
    return options.get("delimiter"), int(options.get("index", 0))


def _replace(objects: list[Obj], replacement: Obj) -> None:
    unknown = sorted(set(replacement) - {"source", "targets"})
    if unknown:
        raise UnsupportedFeature(f"replacement fields {unknown} (supported: source, targets)")
    source = dict(replacement["source"])
    field_path = source.pop("fieldPath", "metadata.name")
    delimiter, index = _check_options(source.pop("options", {}), "source")
    sources = _select(objects, source, "replacement source")
    if len(sources) > 1:
        raise RenderError(f"replacement source {source} selects {len(sources)} objects")
    value = _get_field(sources[0], field_path)
    if delimiter is not None:
        value = str(value).split(delimiter)[index]
    for target in replacement["targets"]:
        unknown = sorted(set(target) - {"select", "fieldPaths", "options"})
        if unknown:
            raise UnsupportedFeature(f"replacement target fields {unknown}")
        delimiter, index = _check_options(target.get("options", {}), "target")
        for obj in _select(objects, target["select"], "replacement target"):
            for path in target["fieldPaths"]:
                new = value
                if delimiter is not None:
                    parts = str(_get_field(obj, path)).split(delimiter)
                    if not 0 <= index < len(parts):
                        raise RenderError(f"{_id(obj)} {path}: no part {index} split by {delimiter!r}")
                    parts[index] = str(value)
                    new = delimiter.join(parts)
                _set_field(obj, path, new)
