"""Checks of the Helm chart (helm/jobq) and the Dockerfile.

- `helm lint --strict`, with default values and with every optional part on;
- the chart rendered both ways, every object validated against the
  Kubernetes schemas (kubernetes-validate, strict: unknown fields fail);
  the two custom resources (ServiceMonitor, KEDA ScaledObject) have no
  schema there, so their fields are checked here one by one;
- what the rendered objects must say: gRPC probes on the health service and
  the configured port, named Service ports, grace periods, security context,
  the worker's server address and the autoscaler's target;
- bad values fail at install time with a message naming the value;
- the Dockerfile: multi-stage, non-root, container listen address, ports,
  STOPSIGNAL.

Run by .ci/run: python tests/helm/check_chart.py
"""

from __future__ import annotations

import json
import pathlib
import unittest

import dockerfile
import helm_python
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "jobq"
ALL_ON = yaml.safe_load((pathlib.Path(__file__).parent / "all-on.values.yaml").read_text())
# Three replicas sharing their queues in PostgreSQL.
POSTGRES = {
    "replicaCount": 3,
    "store": {"postgres": {"enabled": True, "existingSecret": "jobq-db", "key": "url", "poolSize": 8}},
}
KUBERNETES_VERSION = "1.30.0"
RELEASE = "jobq"
NAMESPACE = "queues"
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}


def render(values: dict | None = None) -> list[dict]:
    """The chart's objects, as `helm template` would print them."""
    chart = helm_python.Chart.load(CHART)
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def notes(values: dict | None = None) -> str:
    chart = helm_python.Chart.load(CHART)
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def one(objects: list[dict], kind: str, component: str | None = None) -> dict:
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and (component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component)
    ]
    assert len(found) == 1, f"expected one {kind} ({component}), found {len(found)}"
    return found[0]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


class Lint(unittest.TestCase):
    def lint(self, values: dict | None) -> None:
        report = helm_python.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
        self.assertEqual(problems, [], f"helm lint --strict: {json.dumps(problems, indent=2)}")
        self.assertEqual(report["total_charts_linted"], 1)

    def test_defaults(self) -> None:
        self.lint(None)

    def test_all_optional_parts_on(self) -> None:
        self.lint(ALL_ON)

    def test_postgres_store(self) -> None:
        self.lint(POSTGRES)


class KubernetesSchemas(unittest.TestCase):
    def check(self, objects: list[dict]) -> None:
        for obj in objects:
            name = f'{obj["kind"]}/{obj["metadata"]["name"]}'
            if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
                continue
            with self.subTest(name):
                try:
                    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
                except kubernetes_validate.ValidationError as e:
                    self.fail(f"{name}: {e.message} at {list(e.path)}")

    def test_defaults(self) -> None:
        objects = render()
        self.assertEqual(
            sorted(o["kind"] for o in objects),
            ["Deployment", "PersistentVolumeClaim", "Pod", "Service", "ServiceAccount"],
        )
        self.check(objects)

    def test_all_optional_parts_on(self) -> None:
        objects = render(ALL_ON)
        self.assertEqual(
            sorted(o["kind"] for o in objects),
            [
                "ConfigMap",
                "Deployment",
                "Deployment",
                "Ingress",
                "NetworkPolicy",
                "PersistentVolumeClaim",
                "Pod",
                "PodDisruptionBudget",
                "PrometheusRule",
                "ScaledObject",
                "Service",
                "ServiceAccount",
                "ServiceMonitor",
            ],
        )
        self.check(objects)

    def test_hpa_instead_of_keda(self) -> None:
        values = json.loads(json.dumps(ALL_ON))
        values["worker"]["autoscaling"]["kind"] = "hpa"
        objects = render(values)
        self.check(objects)
        hpa = one(objects, "HorizontalPodAutoscaler")
        self.assertEqual(hpa["spec"]["scaleTargetRef"]["name"], "jobq-worker")
        metric = hpa["spec"]["metrics"][0]["external"]
        self.assertEqual(metric["metric"]["name"], "jobq_queue_ready_jobs")
        self.assertEqual(metric["metric"]["selector"]["matchLabels"], {"queue": "emails"})
        self.assertEqual(metric["target"], {"type": "AverageValue", "averageValue": "100"})


class ServerObjects(unittest.TestCase):
    def server(self, values: dict | None = None) -> tuple[dict, dict, dict]:
        objects = render(values)
        deployment = one(objects, "Deployment", "server")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return deployment, container, one(objects, "Service", "server")

    def test_probes_use_the_grpc_health_service_on_the_grpc_port(self) -> None:
        for grpc_port in (50051, 6000):
            with self.subTest(grpc_port=grpc_port):
                _, container, service = self.server({"ports": {"grpc": grpc_port, "metrics": 9100}})
                self.assertEqual(container["livenessProbe"]["grpc"], {"port": grpc_port, "service": ""})
                self.assertEqual(container["startupProbe"]["grpc"], {"port": grpc_port, "service": ""})
                # A long recovery (NOT_SERVING) must not trip liveness.
                startup = container["startupProbe"]
                self.assertGreaterEqual(startup["periodSeconds"] * startup["failureThreshold"], 600)
                self.assertEqual(
                    container["readinessProbe"]["grpc"], {"port": grpc_port, "service": "jobq.v1.JobQueue"}
                )
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    self.assertNotIn("httpGet", container[probe])
                    self.assertNotIn("exec", container[probe])
                env = env_of(container)
                self.assertEqual(env["JOBQ_LISTEN"], f"0.0.0.0:{grpc_port}")
                self.assertEqual(env["JOBQ_METRICS_LISTEN"], "0.0.0.0:9100")
                ports = {p["name"]: p for p in container["ports"]}
                self.assertEqual(ports["grpc"]["containerPort"], grpc_port)
                self.assertEqual(ports["metrics"]["containerPort"], 9100)
                service_ports = {p["name"]: p for p in service["spec"]["ports"]}
                self.assertEqual(service_ports["grpc"]["port"], grpc_port)
                self.assertEqual(service_ports["grpc"]["targetPort"], "grpc")
                self.assertEqual(service_ports["grpc"]["appProtocol"], "grpc")
                self.assertEqual(service_ports["metrics"]["port"], 9100)
                self.assertEqual(service_ports["metrics"]["targetPort"], "metrics")

    def test_the_data_dir_is_on_a_claim_of_its_own(self) -> None:
        objects = render()
        claim = one(objects, "PersistentVolumeClaim")
        self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOnce"])
        self.assertEqual(claim["spec"]["resources"]["requests"]["storage"], "10Gi")
        self.assertEqual(claim["metadata"]["annotations"]["helm.sh/resource-policy"], "keep")
        self.assertNotIn("storageClassName", claim["spec"])
        deployment = one(objects, "Deployment", "server")
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(env_of(container)["JOBQ_DATA_DIR"], "/var/lib/jobq")
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        self.assertEqual(mounts["data"], "/var/lib/jobq")
        volumes = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(volumes["data"]["persistentVolumeClaim"]["claimName"], claim["metadata"]["name"])
        self.assertEqual(pod["securityContext"]["fsGroup"], 65532)
        self.assertEqual(deployment["spec"]["strategy"], {"type": "Recreate"})

        classed = one(render({"persistence": {"storageClass": "fast-ssd", "size": "50Gi"}}), "PersistentVolumeClaim")
        self.assertEqual(classed["spec"]["storageClassName"], "fast-ssd")
        self.assertEqual(classed["spec"]["resources"]["requests"]["storage"], "50Gi")

        mine = render({"persistence": {"existingClaim": "my-claim"}})
        self.assertFalse([o for o in mine if o["kind"] == "PersistentVolumeClaim"])
        pod = one(mine, "Deployment", "server")["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(volumes["data"]["persistentVolumeClaim"]["claimName"], "my-claim")

        memory = render({"persistence": {"enabled": False}})
        self.assertFalse([o for o in memory if o["kind"] == "PersistentVolumeClaim"])
        container = one(memory, "Deployment", "server")["spec"]["template"]["spec"]["containers"][0]
        self.assertNotIn("JOBQ_DATA_DIR", env_of(container))

    def test_postgres_replicas_roll_spread_and_take_the_url_from_a_secret(self) -> None:
        objects = render(POSTGRES)
        KubernetesSchemas().check(objects)
        deployment = one(objects, "Deployment", "server")
        self.assertEqual(deployment["spec"]["replicas"], 3)
        self.assertEqual(
            deployment["spec"]["strategy"],
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        )
        pod = deployment["spec"]["template"]["spec"]
        (spread,) = pod["topologySpreadConstraints"]
        self.assertEqual(spread["topologyKey"], "kubernetes.io/hostname")
        self.assertEqual(spread["labelSelector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"])
        container = pod["containers"][0]
        (store,) = [e for e in container["env"] if e["name"] == "JOBQ_STORE"]
        self.assertEqual(store["valueFrom"]["secretKeyRef"], {"name": "jobq-db", "key": "url"})
        self.assertEqual(env_of(container)["JOBQ_STORE_POOL_SIZE"], "8")
        # The database holds the jobs: no journal, no claim.
        self.assertNotIn("JOBQ_DATA_DIR", env_of(container))
        self.assertFalse([o for o in objects if o["kind"] == "PersistentVolumeClaim"])
        self.assertNotIn("volumes", pod)
        pdb = one(objects, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        self.assertIn("shared by all 3 jobq replicas", notes(POSTGRES))
        # Schedules live in the database as well: every replica reads the
        # same file, and setting one that is already there changes nothing.
        scheduled = render({**POSTGRES, "schedules": [{"name": "r", "queue": "q", "cron": "@hourly"}]})
        pod = one(scheduled, "Deployment", "server")["spec"]["template"]["spec"]
        self.assertTrue([v for v in pod["volumes"] if v["name"] == "schedules"])

    def test_one_replica_replaced_not_rolled(self) -> None:
        deployment, _, _ = self.server()
        self.assertEqual(deployment["spec"]["replicas"], 1)
        self.assertEqual(deployment["spec"]["strategy"], {"type": "Recreate"})

    def test_kubernetes_waits_longer_than_jobq_drains(self) -> None:
        deployment, container, _ = self.server({"config": {"shutdownGraceSeconds": 25}})
        self.assertEqual(env_of(container)["JOBQ_SHUTDOWN_GRACE"], "25s")
        self.assertEqual(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 35)
        deployment, _, _ = self.server({"terminationGracePeriodSeconds": 90})
        self.assertEqual(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 90)

    def test_locked_down(self) -> None:
        deployment, container, _ = self.server()
        pod = deployment["spec"]["template"]["spec"]
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertNotEqual(pod["securityContext"]["runAsUser"], 0)
        self.assertFalse(pod["automountServiceAccountToken"])
        self.assertTrue(container["securityContext"]["readOnlyRootFilesystem"])
        self.assertFalse(container["securityContext"]["allowPrivilegeEscalation"])
        self.assertEqual(container["securityContext"]["capabilities"]["drop"], ["ALL"])
        self.assertIn("limits", container["resources"])

    def test_config_reaches_the_environment(self) -> None:
        _, container, _ = self.server(
            {"config": {"leaseDuration": "45s", "maxAttempts": 3, "memoryBudgetBytes": 1073741824}}
        )
        env = env_of(container)
        self.assertEqual(env["JOBQ_LEASE_DURATION"], "45s")
        self.assertEqual(env["JOBQ_MAX_ATTEMPTS"], "3")
        self.assertEqual(env["JOBQ_MEMORY_BUDGET_BYTES"], "1073741824")
        self.assertEqual(env["JOBQ_LOG_FORMAT"], "json")
        self.assertEqual(env["MALLOC_ARENA_MAX"], "1")
        self.assertNotIn("JOBQ_OTLP_ENDPOINT", env)
        _, container, _ = self.server(ALL_ON)
        self.assertEqual(env_of(container)["JOBQ_OTLP_ENDPOINT"], "http://otel-collector.observability:4317")

    def test_the_default_memory_settings_fit_under_the_memory_limit(self) -> None:
        """The budget, the unfinished-request limit and the server's own
        20 MiB stay under the container's memory limit."""
        values = helm_python.Chart.load(CHART).values
        limit = values["resources"]["limits"]["memory"]
        self.assertTrue(limit.endswith("Mi"), limit)
        config = values["config"]
        held = config["memoryBudgetBytes"] + config["maxPendingRequestBytes"] + (20 << 20)
        self.assertLessEqual(held, int(limit[:-2]) << 20)

    def test_schedules_reach_the_server_as_a_file_and_roll_the_pod(self) -> None:
        objects = render(ALL_ON)
        config_map = one(objects, "ConfigMap", "server")
        self.assertEqual(json.loads(config_map["data"]["schedules.json"]), ALL_ON["schedules"])
        server = one(objects, "Deployment", "server")
        pod = server["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        path = env_of(container)["JOBQ_SCHEDULES_FILE"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "schedules")
        self.assertEqual(path, mount["mountPath"] + "/schedules.json")
        volume = next(v for v in pod["volumes"] if v["name"] == "schedules")
        self.assertEqual(volume["configMap"]["name"], config_map["metadata"]["name"])
        annotations = server["spec"]["template"]["metadata"]["annotations"]
        self.assertIn("checksum/schedules", annotations)
        self.assertEqual(annotations["example.com/team"], "payments")
        changed = dict(ALL_ON, schedules=ALL_ON["schedules"][:1])
        rolled = one(render(changed), "Deployment", "server")["spec"]["template"]["metadata"]
        self.assertNotEqual(rolled["annotations"]["checksum/schedules"], annotations["checksum/schedules"])
        # None by default: no file, no ConfigMap.
        _, container, _ = self.server()
        self.assertNotIn("JOBQ_SCHEDULES_FILE", env_of(container))
        self.assertFalse([o for o in render() if o["kind"] == "ConfigMap"])

    def test_every_flag_with_a_value_is_set(self) -> None:
        """Each config value maps to the flag's JOBQ_* variable."""
        _, container, _ = self.server()
        env = env_of(container)
        config = helm_python.Chart.load(CHART).values["config"]
        for key in config:
            if key in ("logLevel",):
                continue
            flag = "JOBQ_" + "".join("_" + c if c.isupper() else c.upper() for c in key)
            flag = flag.replace("_SECONDS", "")
            self.assertIn(flag, env, f"config.{key}")


class Secured(unittest.TestCase):
    def test_tls_and_tokens_come_from_secrets(self) -> None:
        objects = render(ALL_ON)
        server = one(objects, "Deployment", "server")
        pod = server["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = env_of(container)
        self.assertEqual(env["JOBQ_TLS_CERT"], "/etc/jobq/tls/tls.crt")
        self.assertEqual(env["JOBQ_TLS_KEY"], "/etc/jobq/tls/tls.key")
        self.assertEqual(env["JOBQ_TLS_CLIENT_CA"], "/etc/jobq/tls/ca.crt")
        self.assertEqual(env["JOBQ_AUTH_TOKENS_FILE"], "/etc/jobq/auth/tokens")
        volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
        self.assertEqual(volumes["tls"], {"secretName": "jobq-tls"})
        self.assertEqual(volumes["auth"], {"secretName": "jobq-tokens"})
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        for name in ("tls", "auth"):
            self.assertTrue(mounts[name]["readOnly"])
            self.assertNotIn("subPath", mounts[name], "subPath mounts never see Secret updates")
        # gRPC probes cannot speak TLS: /healthz on the metrics port instead.
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            self.assertEqual(container[probe]["httpGet"], {"path": "/healthz", "port": "metrics"})
            self.assertNotIn("grpc", container[probe])

        worker = one(objects, "Deployment", "worker")
        (wc,) = worker["spec"]["template"]["spec"]["containers"]
        wenv = {e["name"]: e for e in wc["env"]}
        self.assertEqual(wenv["JOBQ_SERVER"]["value"], f"https://jobq.{NAMESPACE}.svc:50051")
        self.assertEqual(
            wenv["JOBQ_TOKEN"]["valueFrom"]["secretKeyRef"], {"name": "jobq-worker-token", "key": "token"}
        )
        self.assertEqual(wenv["JOBQ_CLIENT_TLS_CA"]["value"], "/etc/jobq/tls/ca.crt")
        (wvolume,) = worker["spec"]["template"]["spec"]["volumes"]
        self.assertEqual(wvolume["secret"]["items"], [{"key": "ca.crt", "path": "ca.crt"}])

    def test_notes_show_how_to_call_a_secured_server(self) -> None:
        text = notes(ALL_ON)
        self.assertIn("-cacert ca.crt", text)
        self.assertIn("authorization: Bearer", text)
        self.assertNotIn("-plaintext", text)

    def test_secrets_are_required_when_switched_on(self) -> None:
        for values, expected in [
            ({"tls": {"enabled": True}}, "secretName"),
            ({"auth": {"enabled": True}}, "secretName"),
        ]:
            with self.subTest(values=values):
                with self.assertRaises(helm_python.HelmError) as caught:
                    render(values)
                self.assertIn(expected, str(caught.exception))


class OptionalObjects(unittest.TestCase):
    def test_pod_disruption_budget_and_service_monitor(self) -> None:
        objects = render(ALL_ON)
        pdb = one(objects, "PodDisruptionBudget")
        server = one(objects, "Deployment", "server")
        self.assertEqual(pdb["spec"]["maxUnavailable"], 0)
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], server["spec"]["selector"]["matchLabels"])
        monitor = one(objects, "ServiceMonitor")
        service = one(objects, "Service")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "prometheus")
        for key, value in monitor["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(service["metadata"]["labels"][key], value)
        self.assertEqual(monitor["spec"]["namespaceSelector"], {"matchNames": [NAMESPACE]})
        (endpoint,) = monitor["spec"]["endpoints"]
        self.assertEqual(
            endpoint, {"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
        )

    def test_example_worker_scales_on_ready_depth(self) -> None:
        objects = render(ALL_ON)
        worker = one(objects, "Deployment", "worker")
        (container,) = worker["spec"]["template"]["spec"]["containers"]
        env = env_of(container)
        self.assertEqual(env["JOBQ_SERVER"], f"https://jobq.{NAMESPACE}.svc:50051")
        self.assertEqual(env["JOBQ_QUEUE"], "emails")
        self.assertEqual(container["command"], ["/usr/local/bin/jobq-email-worker"])
        self.assertNotIn("replicas", worker["spec"], "the autoscaler owns the replica count")
        scaled = one(objects, "ScaledObject")
        self.assertEqual(scaled["spec"]["scaleTargetRef"], {"apiVersion": "apps/v1", "kind": "Deployment", "name": "jobq-worker"})
        self.assertEqual((scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]), (1, 10))
        (trigger,) = scaled["spec"]["triggers"]
        self.assertEqual(trigger["type"], "prometheus")
        self.assertEqual(
            trigger["metadata"],
            {
                "serverAddress": "http://prometheus-operated.monitoring.svc:9090",
                "query": 'sum(jobq_queue_ready_jobs{namespace="queues",service="jobq",queue="emails"})'
                ' + sum(jobq_queue_leased_jobs{namespace="queues",service="jobq",queue="emails"})',
                "threshold": "100",
            },
        )
        # The example worker answers probes on its health port.
        self.assertEqual(env["JOBQ_WORKER_HEALTH_LISTEN"], "0.0.0.0:8081")
        self.assertEqual(container["livenessProbe"]["httpGet"], {"path": "/livez", "port": "health"})
        self.assertEqual(container["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "health"})
        self.assertEqual(container["ports"], [{"name": "health", "containerPort": 8081, "protocol": "TCP"}])

    def test_keda_scales_the_worker_to_zero_and_an_hpa_refuses_to(self) -> None:
        values = json.loads(json.dumps(ALL_ON))
        values["worker"]["autoscaling"]["minReplicas"] = 0
        scaled = one(render(values), "ScaledObject")
        self.assertEqual(scaled["spec"]["minReplicaCount"], 0)
        values["worker"]["autoscaling"]["kind"] = "hpa"
        with self.assertRaises(Exception) as refused:
            render(values)
        self.assertIn("minReplicas: 0 needs kind keda", str(refused.exception))

    def test_service_account_without_a_token_for_every_pod(self) -> None:
        objects = render(ALL_ON)
        account = one(objects, "ServiceAccount")
        self.assertEqual(account["metadata"]["name"], "jobq")
        self.assertIs(account["automountServiceAccountToken"], False)
        pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"]
        pods.append(one(objects, "Pod")["spec"])
        for pod in pods:
            self.assertEqual(pod["serviceAccountName"], "jobq")
            self.assertIs(pod["automountServiceAccountToken"], False)
        # Not created: the pods use the name given, or "default".
        objects = render({"serviceAccount": {"create": False}})
        self.assertEqual([o for o in objects if o["kind"] == "ServiceAccount"], [])
        server = one(objects, "Deployment", "server")
        self.assertEqual(server["spec"]["template"]["spec"]["serviceAccountName"], "default")

    def test_network_policy_admits_the_worker_and_the_configured_peers_to_grpc(self) -> None:
        self.assertEqual([o for o in render() if o["kind"] == "NetworkPolicy"], [])
        peer = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
            "podSelector": {"matchLabels": {"app": "checkout"}},
        }
        prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        objects = render(
            {
                "worker": {"enabled": True},
                "networkPolicy": {"enabled": True, "grpcFrom": [peer], "metricsFrom": [prometheus]},
            }
        )
        policy = one(objects, "NetworkPolicy")
        server = one(objects, "Deployment", "server")
        worker = one(objects, "Deployment", "worker")
        self.assertEqual(policy["spec"]["podSelector"]["matchLabels"], server["spec"]["selector"]["matchLabels"])
        grpc, metrics = policy["spec"]["ingress"]
        self.assertEqual(grpc["ports"], [{"port": "grpc", "protocol": "TCP"}])
        self.assertEqual(
            grpc["from"], [{"podSelector": {"matchLabels": worker["spec"]["selector"]["matchLabels"]}}, peer]
        )
        self.assertEqual(metrics, {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [prometheus]})

    def test_prometheus_rule_alerts_on_this_release(self) -> None:
        objects = render({"prometheusRule": {"enabled": True, "queueAgeSeconds": 120, "labels": {"release": "prometheus"}}})
        rule = one(objects, "PrometheusRule")
        self.assertEqual(rule["metadata"]["labels"]["release"], "prometheus")
        (group,) = rule["spec"]["groups"]
        alerts = {r["alert"]: r for r in group["rules"]}
        self.assertEqual(set(alerts), {"JobqDown", "JobqQueueBacklogOld", "JobqDeadLettersRising", "JobqNoWorkers"})
        selector = 'namespace="queues",service="jobq"'
        for alert in alerts.values():
            self.assertIn(selector, alert["expr"])
            self.assertIn("summary", alert["annotations"])
        self.assertEqual(
            alerts["JobqQueueBacklogOld"]["expr"],
            f"max by (queue) (jobq_queue_oldest_ready_age_seconds{{{selector}}}) > 120",
        )
        self.assertIn("increase(jobq_jobs_dead_lettered_total", alerts["JobqDeadLettersRising"]["expr"])
        self.assertIn("jobq_worker_streams", alerts["JobqNoWorkers"]["expr"])
        self.assertEqual(alerts["JobqDown"]["for"], "10m")
        # Prometheus's own template, left for Prometheus to fill.
        self.assertIn("{{ $labels.queue }}", alerts["JobqNoWorkers"]["annotations"]["summary"])

    def test_helm_test_asks_the_health_service_through_the_service(self) -> None:
        pod = one(render(), "Pod", "test")
        self.assertEqual(pod["metadata"]["annotations"]["helm.sh/hook"], "test")
        (container,) = pod["spec"]["containers"]
        self.assertEqual(container["args"], ["health", "--server", f"http://jobq.{NAMESPACE}.svc:50051"])
        self.assertEqual(pod["spec"]["restartPolicy"], "Never")
        tls = one(render(ALL_ON), "Pod", "test")
        (container,) = tls["spec"]["containers"]
        self.assertEqual(
            container["args"],
            [
                "health",
                "--server",
                f"https://jobq.{NAMESPACE}.svc:50051",
                "--tls-ca",
                "/etc/jobq/tls/ca.crt",
                "--tls-cert",
                "/etc/jobq/tls/tls.crt",
                "--tls-key",
                "/etc/jobq/tls/tls.key",
            ],
        )

    def test_worker_without_autoscaling_has_fixed_replicas(self) -> None:
        objects = render({"worker": {"enabled": True, "replicas": 3}})
        self.assertEqual(one(objects, "Deployment", "worker")["spec"]["replicas"], 3)
        self.assertEqual([o for o in objects if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")], [])

    def test_notes_give_the_commands_to_try_it(self) -> None:
        text = notes()
        self.assertIn(f"kubectl -n {NAMESPACE} port-forward svc/jobq 50051:50051 9090:9090", text)
        self.assertIn("grpcurl -plaintext", text)
        self.assertIn("jobq.v1.JobQueue/Enqueue", text)
        self.assertIn("Keep replicaCount at 1", text)


class Dashboard(unittest.TestCase):
    def server(self, values: dict | None = None) -> tuple[dict, dict, dict]:
        objects = render(values)
        (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == RELEASE]
        (service,) = [o for o in objects if o["kind"] == "Service"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return container, service, {o["kind"]: o for o in objects}

    def test_without_auth_it_stays_on_the_pods_loopback(self) -> None:
        container, service, objects = self.server()
        self.assertEqual(env_of(container)["JOBQ_WEB_LISTEN"], "127.0.0.1:8080")
        self.assertNotIn("web", [p["name"] for p in container["ports"]])
        self.assertNotIn("web", [p["name"] for p in service["spec"]["ports"]])
        self.assertNotIn("Ingress", objects)
        self.assertIn("port-forward deploy/jobq 8080:8080", notes())

    def test_with_auth_it_is_on_the_service_and_the_ingress(self) -> None:
        container, service, objects = self.server(ALL_ON)
        env = env_of(container)
        self.assertEqual(env["JOBQ_WEB_LISTEN"], "0.0.0.0:8080")
        self.assertEqual(env["JOBQ_WEB_TRACE_URL"], "https://jaeger.example.com/trace/{trace_id}")
        self.assertIn({"name": "web", "containerPort": 8080, "protocol": "TCP"}, container["ports"])
        (web,) = [p for p in service["spec"]["ports"] if p["name"] == "web"]
        self.assertEqual((web["port"], web["targetPort"]), (8080, "web"))
        ingress = objects["Ingress"]["spec"]
        self.assertEqual(ingress["ingressClassName"], "nginx")
        self.assertEqual(ingress["tls"], [{"hosts": ["jobq.example.com"], "secretName": "jobq-web-tls"}])
        backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
        self.assertEqual(backend, {"name": RELEASE, "port": {"name": "web"}})
        policy = objects["NetworkPolicy"]["spec"]["ingress"]
        self.assertIn([{"port": "web", "protocol": "TCP"}], [rule["ports"] for rule in policy])
        self.assertIn("https://jobq.example.com/", notes(ALL_ON))

    def test_switched_off(self) -> None:
        container, service, _ = self.server({"web": {"enabled": False}})
        self.assertEqual(env_of(container)["JOBQ_WEB_LISTEN"], "off")
        self.assertNotIn("port-forward deploy", notes({"web": {"enabled": False}}))


class ChartReadme(unittest.TestCase):
    def test_every_value_is_described(self) -> None:
        readme = (CHART / "README.md").read_text()

        def leaves(values: dict, prefix: str = ""):
            for key, value in values.items():
                path = f"{prefix}{key}"
                if isinstance(value, dict) and value and key not in ("resources", "podSecurityContext", "securityContext"):
                    yield from leaves(value, path + ".")
                else:
                    yield path

        for path in leaves(helm_python.Chart.load(CHART).values):
            parents = [path.rsplit(".", n)[0] + ".*" for n in range(1, path.count(".") + 1)]
            documented = f"`{path}`" in readme or any(f"`{p}`" in readme for p in parents)
            self.assertTrue(documented or f"`{path}`," in readme, f"{path} is not in helm/jobq/README.md")


class BadValues(unittest.TestCase):
    def refused(self, values: dict, expected: str) -> None:
        with self.assertRaises(helm_python.HelmError) as caught:
            render(values)
        self.assertIn(expected, str(caught.exception))

    def test_refused_with_a_message(self) -> None:
        cases = [
            ({"replicaCount": 2}, "replicaCount"),
            ({"store": {"postgres": {"enabled": True}}}, "existingSecret"),
            ({"persistence": {"size": "lots"}}, "size"),
            ({"config": {"leaseDuration": "soon"}}, "leaseDuration"),
            ({"config": {"backoffJitter": 2}}, "backoffJitter"),
            ({"config": {"maxAttempts": 0}}, "maxAttempts"),
            ({"config": {"leaseDurations": "30s"}}, "leaseDurations"),
            ({"ports": {"grpc": 70000, "metrics": 9090}}, "grpc"),
            ({"otlp": {"endpoint": "collector:4317"}}, "endpoint"),
            ({"worker": {"queue": "bad queue"}}, "queue"),
            ({"worker": {"autoscaling": {"kind": "cron"}}}, "kind"),
            ({"terminationGracePeriodSeconds": 5}, "must be larger than config.shutdownGraceSeconds"),
            ({"schedules": [{"name": "r", "cron": "@hourly"}]}, "queue"),
            ({"schedules": [{"name": "r", "queue": "q"}]}, "oneOf"),
            ({"schedules": [{"name": "r", "queue": "q", "cron": "@hourly", "every": "1m"}]}, "oneOf"),
            ({"schedules": [{"name": "r", "queue": "q", "every": "soon"}]}, "every"),
            ({"schedules": [{"name": "r", "queue": "q", "cron": "@daily", "misfire": "later"}]}, "misfire"),
            ({"web": {"ingress": {"enabled": True}}}, "web.ingress.enabled needs auth.enabled"),
            ({"web": {"traceUrl": "jaeger/{id}"}}, "traceUrl"),
        ]
        for values, expected in cases:
            with self.subTest(values=values):
                self.refused(values, expected)


class Container(unittest.TestCase):
    def test_dockerfile(self) -> None:
        commands = dockerfile.parse_file(str(ROOT / "Dockerfile"))
        stages = [i for i, c in enumerate(commands) if c.cmd == "FROM"]
        self.assertGreaterEqual(len(stages), 2, "multi-stage: build, then a small runtime image")
        final = commands[stages[-1] :]
        by_cmd: dict[str, list] = {}
        for c in final:
            by_cmd.setdefault(c.cmd, []).append(c.value)
        build = commands[: stages[-1]]
        self.assertTrue(any("cargo build --release --locked" in c.original for c in build if c.cmd == "RUN"))
        self.assertFalse(any("protobuf-compiler" in c.original for c in commands), "no system protoc")
        (user,) = by_cmd["USER"]
        self.assertNotIn(user[0].split(":")[0], ("root", "0"))
        env = {}
        for value in by_cmd["ENV"]:
            env.update(dict(zip(value[::2], value[1::2])))
        self.assertEqual(env["JOBQ_LISTEN"], "0.0.0.0:50051")
        self.assertEqual(env["JOBQ_METRICS_LISTEN"], "0.0.0.0:9090")
        self.assertEqual(env["MALLOC_ARENA_MAX"], "1")
        (exposed,) = by_cmd["EXPOSE"]
        defaults = helm_python.Chart.load(CHART).values["ports"]
        self.assertEqual(set(exposed), {str(defaults["grpc"]), str(defaults["metrics"]), str(defaults["web"])})
        self.assertEqual(by_cmd["STOPSIGNAL"], [("SIGTERM",)])
        (entrypoint,) = by_cmd["ENTRYPOINT"]
        self.assertEqual(entrypoint, ("/usr/local/bin/jobq",))
        copied = " ".join(c.original for c in build)
        self.assertIn("jobq-email-worker", copied, "the chart's example worker is in the image")


if __name__ == "__main__":
    unittest.main(verbosity=2)
