"""deploy/kubernetes/: valid for Kubernetes and KEDA, and true to the gateway it deploys.

Every object ``kubectl apply -k deploy/kubernetes`` applies (rendered by
tests/unit/kubernetes_fixtures.py), and the two example files applied by hand, are validated
with kubernetes-validate's strict schemas (unknown fields are errors) for each Kubernetes
version in ``KUBERNETES_VERSIONS``, and KEDA's kinds against KEDA's CRD schemas. Then the
manifests are held to the gateway: the ConfigMap's config passes the gateway's own config
check and serves config/example.yaml's models with routes; each model has its workers, a
disruption budget and a ScaledObject on its own queue; grace periods cover the longest
stream; probes, selectors, resources, environment and the Secret's use are checked.
"""

from __future__ import annotations

import ipaddress
import json
import re

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft202012Validator

from shared.config import load_config
from shared.keys import rq_queue_key, rq_started_registry_key
from shared.settings import Settings
from tests.unit.kubernetes_fixtures import (
    MANIFESTS,
    NOT_IN_KUSTOMIZATION,
    ROOT,
    all_objects,
    container_env,
    documents,
    find,
    keda_schema,
    kustomization,
    pod_templates,
    quantity_bytes,
    render,
    selects,
)

# The supported Kubernetes releases at the time of writing (each is supported for about 14
# months): the oldest and the newest that kubernetes-validate ships schemas for.
KUBERNETES_VERSIONS = ("1.35", "1.37")
# KEDA's Redis list scaler reads these trigger metadata keys and authentication parameters
# (kedacore/keda v2.20.2, pkg/scalers/redis_scaler.go, the keda:"name=..." tags of
# redisMetadata and redisConnectionInfo); any other key would be ignored, not refused.
REDIS_TRIGGER_METADATA = {"listName", "listLength", "activationListLength", "databaseIndex", "enableTLS",
                          "unsafeSsl", "address", "addresses", "host", "hosts", "port", "ports",
                          "username", "sentinelMaster"}
REDIS_AUTH_PARAMETERS = {"address", "addresses", "host", "hosts", "port", "ports", "username", "password",
                         "sentinelUsername", "sentinelPassword", "sentinelMaster", "tls", "cert", "Cert",
                         "key", "keyPassword", "ca"}
MAX_WORKER_PODS = 20  # a "sane maximum": more pods per model than this is a typo, not a plan
# Memory, MB, from docs/benchmarks.md ("Capacity", every process at 1,000 streams).
WORKER_SUPERVISOR_MB, WORKER_PROCESS_BUSY_MB = 54.7, 65.3  # a process with about 256 jobs running
WEB_MASTER_MB, WEB_PROCESS_IDLE_MB = 46.2, 43.4
WEB_MB_PER_STREAM = (106.8 - 43.4) / 568  # web worker 1: 568 open streams
MB = 10**6
PLACEHOLDER = "placeholder-value-{}"  # each Secret key's stand-in value: never in a ConfigMap


@pytest.fixture(scope="module")
def objects():
    return render()


@pytest.fixture(scope="module")
def secrets():
    """The Secrets as secret.example.yaml shapes them (name -> key -> value), each value a
    placeholder of its own but the Redis address."""
    found = {}
    for secret in find(documents(MANIFESTS / "secret.example.yaml"), "Secret"):
        found[secret["metadata"]["name"]] = {
            key: value if key == "REDIS_ADDRESS" else PLACEHOLDER.format(key)
            for key, value in secret["stringData"].items()}
    return found


def _config_env(secrets):
    """What the config's ${VAR}s are read from: the Secret every pod takes whole (envFrom)."""
    return secrets["ai-gateway-secrets"]


@pytest.fixture(scope="module")
def config_text(objects):
    [config_map] = find(objects, "ConfigMap", "ai-gateway-config")
    return config_map["data"]["config.yaml"]


@pytest.fixture(scope="module")
def config(config_text, secrets, tmp_path_factory):
    """The ConfigMap's config as a pod loads it, through the gateway's own config check
    (``load_config``, what ``python -m shared.config check`` runs): a problem fails here."""
    values = _config_env(secrets)
    path = tmp_path_factory.mktemp("configmap") / "config.yaml"
    path.write_text(config_text, encoding="utf-8")
    return load_config(str(path), values)


def _workers(objects):
    return [o for o in find(objects, "Deployment") if o["metadata"]["labels"].get("app.kubernetes.io/component")
            == "worker"]


def _model_of(worker):
    [container] = worker["spec"]["template"]["spec"]["containers"]
    # args only: a command would replace the image's entrypoint (tools/container/entrypoint.py).
    assert "command" not in container
    *command, model = container["args"]
    assert command == ["python", "-m", "workers"]
    return model


def _container(workload):
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return container


# -- valid for Kubernetes and KEDA ---------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_kubernetes_and_keda(version):
    checked = set()
    for obj in all_objects():
        schema = keda_schema(obj["apiVersion"], obj["kind"])
        if schema is not None:
            errors = [f"{'.'.join(map(str, e.path))}: {e.message}"
                      for e in Draft202012Validator(schema).iter_errors(obj)]
            assert not errors, (obj["kind"], obj["metadata"]["name"], errors)
        else:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, error.path))}: "
                            f"{error.message}")
        checked.add(obj["kind"])
    assert checked >= {"Namespace", "ConfigMap", "Secret", "Deployment", "StatefulSet", "Service",
                       "PodDisruptionBudget", "NetworkPolicy", "Ingress", "ScaledObject",
                       "TriggerAuthentication"}


def test_the_validation_catches_a_misspelt_field():
    """The checks above would catch a typo: a strict schema refuses an unknown field, in
    Kubernetes' kinds and in KEDA's (whose CRD would otherwise prune it silently)."""
    [web] = find(render(), "Deployment", "ai-gateway-web")
    web["spec"]["template"]["spec"]["terminationGracePeriod"] = 690
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSIONS[-1], strict=True)
    scaled = find(render(), "ScaledObject")[0]
    scaled["spec"]["minReplicas"] = 1
    assert list(Draft202012Validator(keda_schema(scaled["apiVersion"], "ScaledObject")).iter_errors(scaled))


def test_every_file_is_applied_by_the_kustomization_or_by_hand():
    listed = set(kustomization()["resources"]) | {"kustomization.yaml", "config.yaml"}
    on_disk = {path.name for path in MANIFESTS.glob("*.yaml")}
    assert on_disk - listed == set(NOT_IN_KUSTOMIZATION)
    assert not listed - on_disk
    # Applying the example Secret would replace the real keys with placeholders.
    assert not find(render(), "Secret")


def test_everything_is_in_the_gateways_namespace(objects):
    [namespace] = find(objects, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in all_objects():
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], obj["metadata"]["name"]


# -- the config ------------------------------------------------------------------------------------

def test_the_configmap_passes_the_gateways_config_check(config):
    assert config.models
    assert config.warnings == ()
    assert config.routes_configured and config.routes


def test_the_configmap_serves_the_example_configs_models_and_routes(config, secrets):
    example = load_config(str(ROOT / "config" / "example.yaml"), _config_env(secrets))
    # The example takes its keys from the environment by default; the manifests name them.
    assert config.models == example.models
    assert (config.defaults, config.gitlab, config.jobs) == (example.defaults, example.gitlab, example.jobs)
    assert [(r.destination, r.rate_limit, r.match.model_name) for r in config.routes] == \
           [(r.destination, r.rate_limit, r.match.model_name) for r in example.routes]


def test_the_configmap_holds_no_secret(config_text, secrets):
    for values in secrets.values():
        for key, value in values.items():
            assert value not in config_text or key == "REDIS_ADDRESS"
    # Each model's key is a reference to the Secret, never a value.
    for model in yaml.safe_load(config_text)["models"]:
        assert re.fullmatch(r"\$\{[A-Z_]+\}", model["api_key"]), model["name"]
        assert model["api_key"][2:-1] in _config_env(secrets)
    assert not re.search(r"\b(sk-|glpat-|sk-ant-)", config_text)


# -- a worker Deployment, a disruption budget and autoscaling per model ----------------------------

def test_every_model_has_its_worker_deployment_budget_and_scaledobject(objects, config):
    workers = {_model_of(w): w for w in _workers(objects)}
    assert sorted(workers) == sorted(m.name for m in config.models)
    budgets = find(objects, "PodDisruptionBudget")
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in find(objects, "ScaledObject")}
    assert len(scaled) == len(workers)
    for model, worker in workers.items():
        labels = worker["spec"]["template"]["metadata"]["labels"]
        # The selector picks this model's pods and no other model's, nor the API's.
        others = [w for w in _workers(objects) + find(objects, "Deployment", "ai-gateway-web") if w is not worker]
        assert selects(worker["spec"]["selector"]["matchLabels"], labels)
        assert not any(selects(worker["spec"]["selector"]["matchLabels"], o["spec"]["template"]["metadata"]["labels"])
                       for o in others)
        # KEDA's HPA owns the replica count: a count here would reset it on every apply.
        assert "replicas" not in worker["spec"]
        selector = worker["spec"]["selector"]["matchLabels"]
        [budget] = [b for b in budgets if b["spec"]["selector"]["matchLabels"] == selector]
        assert budget["spec"].get("maxUnavailable") == 1
        spec = scaled[worker["metadata"]["name"]]["spec"]
        assert spec["minReplicaCount"] == 1  # with no worker the API refuses at once: the queue never grows
        assert 1 < spec["maxReplicaCount"] <= MAX_WORKER_PODS
        lists = {t["metadata"]["listName"] for t in spec["triggers"]}
        assert rq_queue_key(model) in lists
        assert lists <= {rq_queue_key(model), rq_started_registry_key(model)}


def test_scaledobjects_use_keda_redis_list_scaler_as_it_reads_them(objects, secrets):
    [auth] = find(objects, "TriggerAuthentication")
    assert {p["parameter"] for p in auth["spec"]["secretTargetRef"]} <= REDIS_AUTH_PARAMETERS
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in secrets[ref["name"]]
    for scaled in find(objects, "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["type"] == "redis"  # a single Redis, not redis-cluster nor redis-sentinel
            assert set(trigger["metadata"]) <= REDIS_TRIGGER_METADATA, trigger["metadata"]
            assert int(trigger["metadata"]["listLength"]) > 0
            assert "password" not in trigger["metadata"]  # from the Secret, never in the object
            assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_worker_files_differ_only_in_their_model():
    """Each model's file is a copy of one template: a change made to one is made to all."""
    texts = set()
    for path in sorted(MANIFESTS.glob("worker-*.yaml")):
        model = path.stem.removeprefix("worker-")
        texts.add(path.read_text().replace(model, "MODEL").replace(re.sub(r"[^a-z0-9-]", "-", model), "MODEL"))
    assert len(texts) == 1


# -- the API ---------------------------------------------------------------------------------------

def test_the_api_has_probes_a_service_and_a_budget(objects):
    [web] = find(objects, "Deployment", "ai-gateway-web")
    container = _container(web)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": Settings().port, "metrics": Settings().metrics_port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    labels = web["spec"]["template"]["metadata"]["labels"]
    [service] = find(objects, "Service", "ai-gateway")
    assert selects(service["spec"]["selector"], labels)
    assert not any(selects(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
                   for w in _workers(objects))
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    [budget] = find(objects, "PodDisruptionBudget", "ai-gateway-web")
    assert budget["spec"]["selector"]["matchLabels"] == web["spec"]["selector"]["matchLabels"]
    assert web["spec"]["replicas"] >= 2  # a disruption budget of one unavailable leaves one serving


def test_the_ingress_buffers_requests_and_not_responses(objects, config):
    [ingress] = find(documents(MANIFESTS / "ingress.example.yaml"), "Ingress")
    notes = {k.removeprefix("nginx.ingress.kubernetes.io/"): v for k, v in ingress["metadata"]["annotations"].items()}
    assert notes["proxy-request-buffering"] == "on"
    assert notes["proxy-buffering"] == "off"
    assert quantity_bytes(notes["proxy-body-size"].replace("m", "Mi")) >= Settings().max_body_bytes
    # nginx's read timeout: past the longest wait for a whole answer, and past a stream's keep-alives.
    assert int(notes["proxy-read-timeout"]) > max(config.max_timeout, Settings().stream_keepalive_interval)
    [service] = find(objects, "Service", "ai-gateway")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_api_believes_no_forwarded_address_from_outside_its_pod_by_default(objects, secrets):
    """Any pod that reaches the Service could name any client in X-Forwarded-For if its address
    were trusted (all private ranges were): the default trusts loopback only, and the operator
    names the ingress controller's pods (README.md, "Ingress")."""
    [web] = find(objects, "Deployment", "ai-gateway-web")
    trusted = Settings.from_env(container_env(_container(web), secrets)).forwarded_allow_ips
    assert trusted != "*"
    assert all(ipaddress.ip_network(entry).is_loopback for entry in trusted.split(",")), trusted
    readme = " ".join((MANIFESTS / "README.md").read_text().split())
    assert "`FORWARDED_ALLOW_IPS` is `127.0.0.1,::1`" in readme and "controller's pods" in readme


# -- every pod -------------------------------------------------------------------------------------

def test_grace_periods_cover_the_longest_stream(objects, config):
    """gunicorn's graceful timeout and the worker supervisor's stop both wait for the longest
    stream (a model's timeout + max_stream_duration) + 15 s: the kubelet must wait longer,
    after the web pod's preStop sleep, or it kills streams that were allowed to finish."""
    for workload, template in pod_templates(objects):
        if workload["metadata"]["name"] == "redis":
            continue
        spec = template["spec"]
        hook = _container(workload).get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_stop = int(hook[1]) if hook[:1] == ["sleep"] else 0
        assert spec["terminationGracePeriodSeconds"] >= config.max_stream_duration + 15 + pre_stop, \
            workload["metadata"]["name"]


def test_every_pod_meets_the_restricted_pod_security_standard(objects):
    for workload, template in pod_templates(objects):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert context["readOnlyRootFilesystem"] is True, workload["metadata"]["name"]


def test_resource_requests_cover_the_benchmarked_memory(objects, config):
    """docs/benchmarks.md's measured memory, for the processes the config and environment start."""
    for _, template in pod_templates(objects):
        for container in template["spec"]["containers"]:
            resources = container["resources"]
            assert quantity_bytes(resources["limits"]["memory"]) >= quantity_bytes(resources["requests"]["memory"])
            assert resources["requests"]["cpu"]
    for worker in _workers(objects):
        model = config.model(_model_of(worker))
        assert model.concurrency <= 256  # the measured process ran about 256 jobs
        needed = WORKER_SUPERVISOR_MB + model.workers * WORKER_PROCESS_BUSY_MB
        assert quantity_bytes(_container(worker)["resources"]["requests"]["memory"]) >= needed * MB
    [web] = find(objects, "Deployment", "ai-gateway-web")
    env = {e["name"]: e.get("value") for e in _container(web)["env"]}
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("WEB_")})
    needed = WEB_MASTER_MB + settings.web_concurrency * (WEB_PROCESS_IDLE_MB + settings.web_threads * WEB_MB_PER_STREAM)
    assert quantity_bytes(_container(web)["resources"]["requests"]["memory"]) >= needed * MB


def test_each_container_gets_valid_settings_and_every_key_the_config_names(objects, config_text, secrets):
    named = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", json.dumps(yaml.safe_load(config_text))))
    assert named  # the models' keys
    for workload in [*find(objects, "Deployment")]:
        container = _container(workload)
        env = container_env(container, secrets)
        assert named <= set(env), workload["metadata"]["name"]  # each pod loads the whole config
        settings = Settings.from_env(env)  # raises, naming each bad variable
        assert settings.redis_url == f"redis://:{PLACEHOLDER.format('REDIS_PASSWORD')}@" \
                                     f"{secrets['ai-gateway-secrets']['REDIS_ADDRESS']}/0"
        # The gateway's own GitLab token: the API's, never the workers' (they never call GitLab).
        assert ("GITLAB_API_TOKEN" in env) == (workload["metadata"]["name"] == "ai-gateway-web")
        assert settings.config_file_path.startswith(
            next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config") + "/")
        assert _container(workload)["image"] == _container(find(objects, "Deployment", "ai-gateway-web")[0])["image"]


def test_the_config_is_mounted_as_a_directory_so_sighup_reads_the_updated_file(objects):
    """The kubelet updates a ConfigMap volume in place, but never a file mounted with subPath: the
    README's SIGHUP after `kubectl apply` would then read the old file."""
    for workload in find(objects, "Deployment"):
        container = _container(workload)
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "config"]
        assert "subPath" not in mount and "subPathExpr" not in mount, workload["metadata"]["name"]
        [volume] = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
        assert volume["configMap"]["name"] == "ai-gateway-config"
        # args only: the image's entrypoint runs, whose exec leaves the process SIGHUP reloads as PID 1.
        assert "command" not in container, workload["metadata"]["name"]


def test_there_is_exactly_one_redis_with_append_only_persistence(objects):
    [redis] = find(objects, "StatefulSet")
    assert redis["spec"]["replicas"] == 1  # a second replica would be a second, empty Redis
    args = _container(redis)["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"  # never evict a queued job
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    [service] = find(objects, "Service", "redis")
    assert selects(service["spec"]["selector"], redis["spec"]["template"]["metadata"]["labels"])
