"""The Kubernetes manifests (deploy/kubernetes): rendered, validated, scanned, and held to the server's flags.

``kubectl kustomize`` renders each overlay as a user's ``kubectl apply -k`` would; every object
is validated against Kubernetes' own OpenAPI schemas (kubernetes-validate, strict: no unknown
field; ``kubectl --dry-run=client`` cannot, it asks an API server for them); checkov scans the
result and must find nothing but the findings the Deployment skips with a reason.  Then the
wiring no schema can see: the probes ask the server's readiness and liveness paths on its
port, the grace period outlasts preStop plus ``--shutdown-grace``, the API key comes from a
Secret under the variable the CLI reads, and the GPU overlay asks for a GPU and runs on CUDA.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

from funasr_wss.server.app import CLOSE_SECONDS
from funasr_wss.server.cli import ENV_PREFIX, PROG, PROG_2PASS, env_var, settings_from_args
from funasr_wss.server.http_routes import HEALTH_PATH, LIVENESS_PATH, METRICS_PATH

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("cpu", "gpu")
#: Objects of CRDs the schemas do not hold; checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor"}


def kubectl() -> str:
    found = shutil.which("kubectl")
    assert found, "kubectl is needed (kubectl >= 1.21 for its kustomize; .ci/run installs one when missing)"
    return found


_rendered: Dict[str, str] = {}


def rendered_text(overlay: str) -> str:
    if overlay not in _rendered:
        run = subprocess.run([kubectl(), "kustomize", str(KUBE / "overlays" / overlay)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, f"kubectl kustomize overlays/{overlay} failed: {run.stderr}"
        _rendered[overlay] = run.stdout
    return _rendered[overlay]


def rendered(overlay: str) -> List[dict]:
    return [d for d in yaml.safe_load_all(rendered_text(overlay)) if d]


def one(docs: List[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def server_container(docs: List[dict]) -> dict:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "server")


def container_settings(container: dict):
    """The server's settings as the container starts it: its command, and its environment (the Secret's
    value stands in as a placeholder)."""
    argv = container["command"]
    assert argv[0] in (PROG, PROG_2PASS), argv
    env = {e["name"]: e.get("value", "from-a-secret") for e in container.get("env", [])}
    return settings_from_args(argv[1:], argv[0], environ=env)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renders_and_validates_against_the_kubernetes_schemas(overlay):
    import kubernetes_validate

    docs = rendered(overlay)
    kinds = sorted(d["kind"] for d in docs)
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor",
                 "PersistentVolumeClaim", "NetworkPolicy", "ServiceAccount", "Namespace"):
        assert kind in kinds, f"overlays/{overlay} has no {kind}"
    version = kubernetes_validate.latest_version()
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any schema error


def test_a_schema_error_is_caught():
    """The validator is not a rubber stamp: a misspelt field in the Deployment fails."""
    import kubernetes_validate

    deployment = one(rendered("cpu"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/health"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_checkov_finds_nothing_but_the_explained_skips(tmp_path):
    checkov = shutil.which("checkov")
    assert checkov, ("the checkov command is needed: install it apart, e.g. `python -m venv ~/.checkov && "
                     "~/.checkov/bin/pip install checkov`, and put its bin/checkov on PATH (.ci/run does)")
    files = []
    for overlay in OVERLAYS:  # one checkov run for both: it takes seconds to start
        files += ["-f", str(tmp_path / f"{overlay}.yaml")]
        (tmp_path / f"{overlay}.yaml").write_text(rendered_text(overlay), "utf-8")
    run = subprocess.run([checkov, *files, "--framework", "kubernetes", "--skip-download", "-o", "json"],
                         capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path)
    report = json.loads(run.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["check_name"], c["file_path"], c["resource"]) for c in results["failed_checks"]]
    assert not failed, f"checkov findings: {failed}"
    assert report["summary"]["passed"] > 100 and not results["parsing_errors"]
    assert report["summary"]["resource_count"] >= 2 * 10  # both overlays were read
    for skipped in results["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment", "")
        assert len(reason) > 20, f"{skipped['check_id']} is skipped without a reason"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_grace_and_secret_follow_the_server(overlay):
    docs = rendered(overlay)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = server_container(docs)
    settings = container_settings(container)
    port = next(p for p in container["ports"] if p["name"] == container["readinessProbe"]["httpGet"]["port"])
    assert port["containerPort"] == settings.port
    # readiness = /health (loading, draining, full: no new connections); liveness = /livez (200 in all of them)
    assert container["readinessProbe"]["httpGet"]["path"] == HEALTH_PATH
    assert container["livenessProbe"]["httpGet"]["path"] == LIVENESS_PATH
    assert container["livenessProbe"]["httpGet"]["port"] == port["name"]
    # SIGKILL must not come before the drain is over: preStop, then --shutdown-grace, then goodbyes
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + settings.shutdown_grace + CLOSE_SECONDS
    # the API key: from a Secret, under the variable the CLI reads for --api-key
    key = next(e for e in container["env"] if e["name"] == env_var("--api-key"))
    assert key["valueFrom"]["secretKeyRef"]["name"] and key["valueFrom"]["secretKeyRef"]["key"]
    assert settings.api_key == "from-a-secret"
    # The server refuses FUNASR_WSS_* variables it does not know: no service links, and no Service whose
    # links would be FUNASR_WSS_SERVICE_HOST, FUNASR_WSS_PORT, ... if they were turned on.
    assert pod["enableServiceLinks"] is False
    for service in (d for d in docs if d["kind"] == "Service"):
        assert not (service["metadata"]["name"].upper().replace("-", "_") + "_").startswith(ENV_PREFIX)
    # writable: only the volumes, and they hold what the server writes
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert "/tmp" in mounts
    for path in (settings.download_model_dir, settings.self_signed_dir):
        assert any(path == m or path.startswith(m + "/") for m in mounts), f"{path} is on the read-only root"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_pdb_hpa_and_servicemonitor_select_the_pods(overlay):
    docs = rendered(overlay)
    deployment = one(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    service = one(docs, "Service")
    assert selects(service["spec"]["selector"])
    assert selects(one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    target = one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    monitor = one(docs, "ServiceMonitor")
    assert all(service["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == METRICS_PATH and endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert one(docs, "Namespace")["metadata"]["name"] == deployment["metadata"]["namespace"]


def test_gpu_overlay_asks_for_a_gpu_and_runs_on_cuda():
    gpu, cpu = server_container(rendered("gpu")), server_container(rendered("cpu"))
    assert container_settings(gpu).device == "cuda" and container_settings(cpu).device == "cpu"
    assert int(gpu["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert gpu["image"] != cpu["image"] and re.search(r"gpu", gpu["image"])
    tolerations = one(rendered("gpu"), "Deployment")["spec"]["template"]["spec"]["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)
