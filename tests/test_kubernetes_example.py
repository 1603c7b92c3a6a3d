"""``examples/kubernetes/``: objects Kubernetes accepts, of the kinds and with the fields the
sharded run relies on (Indexed completions, one shard per index copying into the target, the
list, the target, the logins).

The schema check is the Kubernetes OpenAPI schema (``kubernetes-validate``, offline), strict:
an unknown or misspelt field fails as ``kubectl apply`` would refuse it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.commandline import run_cli
from support.services import unavailable

EXAMPLES = Path(__file__).parent.parent / "examples" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"  # backoffLimitPerIndex is beta (on by default) from 1.29

Document = dict[str, Any]


def _documents() -> dict[str, Document]:
    found: dict[str, Document] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[f"{document['kind']}/{document['metadata']['name']}"] = document
    return found


DOCUMENTS = _documents()


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_each_object_is_valid_for_kubernetes(name: str) -> None:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        unavailable("kubernetes-validate is not installed (pip install -e '.[test]')")

    kubernetes_validate.validate(DOCUMENTS[name], KUBERNETES_VERSION, strict=True)


def test_the_example_holds_an_indexed_job_a_nightly_cronjob_the_list_and_the_logins() -> None:
    assert {name.partition("/")[0] for name in DOCUMENTS} >= {
        "Job",
        "CronJob",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
    }


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_every_index_runs_its_own_shard_of_the_one_list(kind: str) -> None:
    job = _job_spec(kind)
    [container] = job["template"]["spec"]["containers"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    words = _bulkpull_words(container)

    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == int(env["SHARDS"])
    assert words[words.index("--shard") + 1] == "$JOB_COMPLETION_INDEX/$SHARDS"
    assert words[words.index("--to") + 1] == "$TARGET"
    [target] = [variable for variable in container["env"] if variable["name"] == "TARGET"]
    assert target["valueFrom"]["configMapKeyRef"]["name"] == "bulkpull-images"
    assert (
        target["valueFrom"]["configMapKeyRef"]["key"]
        in DOCUMENTS["ConfigMap/bulkpull-images"]["data"]
    )
    for flag in ("--report", "--lock"):  # one file of each per shard
        assert "$JOB_COMPLETION_INDEX" in words[words.index(flag) + 1]
    mounts = _mounts(job, container)
    list_file = Path(words[1])
    assert mounts[str(list_file.parent)] == ("configMap", "bulkpull-images")
    assert list_file.name in DOCUMENTS["ConfigMap/bulkpull-images"]["data"]
    assert mounts[env["DOCKER_CONFIG"]] == ("secret", "bulkpull-logins")
    assert "config.json" in DOCUMENTS["Secret/bulkpull-logins"]["stringData"]


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
async def test_every_flag_the_pods_pass_is_one_bulkpull_has(kind: str) -> None:
    [container] = _job_spec(kind)["template"]["spec"]["containers"]
    flags = [word for word in _bulkpull_words(container) if word.startswith("--")]

    code, help_text, _ = await run_cli("--help")

    assert code == 0
    for flag in flags:
        assert re.search(rf"{flag}\b", help_text), f"bulkpull --help has no {flag}"


def _job_spec(kind: str) -> Document:
    [document] = [value for name, value in DOCUMENTS.items() if name.startswith(f"{kind}/")]
    spec: Document = document["spec"]
    return spec["jobTemplate"]["spec"] if kind == "CronJob" else spec


def _bulkpull_words(container: Mapping[str, Any]) -> list[str]:
    """The words of the ``bulkpull`` command in the container's shell line, from ``bulkpull``."""
    assert container["command"] == ["sh", "-c"]
    [line] = container["args"]
    words = shlex.split(line.split("exec ", 1)[1])
    assert words[0] == "bulkpull"
    return words


def _mounts(job: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Mount path -> (volume kind, the ConfigMap, Secret or claim it comes from)."""
    volumes = dict(_volume_sources(job["template"]["spec"]["volumes"]))
    return {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}


def _volume_sources(volumes: list[Document]) -> Iterator[tuple[str, tuple[str, str]]]:
    for volume in volumes:
        if "configMap" in volume:
            yield volume["name"], ("configMap", volume["configMap"]["name"])
        elif "secret" in volume:
            yield volume["name"], ("secret", volume["secret"]["secretName"])
        else:
            claim = volume["persistentVolumeClaim"]["claimName"]
            yield volume["name"], ("persistentVolumeClaim", claim)
