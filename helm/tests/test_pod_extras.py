"""Extra volumes, mounts, init containers and sidecars per component, and each pool's /tmp."""
import pytest

from conftest import pod_spec, render, render_error

CA_VOLUME = {"name": "db-ca", "configMap": {"name": "db-ca"}}
CA_MOUNT = {"name": "db-ca", "mountPath": "/etc/db-ca", "readOnly": True}
INIT = {"name": "fetch-models", "image": "busybox:1.36"}
SIDECAR = {"name": "cloud-sql-proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2"}
EXTRAS = {"extraVolumes": [CA_VOLUME], "extraVolumeMounts": [CA_MOUNT],
          "initContainers": [INIT], "sidecars": [SIDECAR]}
# component values key -> (Deployment suffix, the chart's main containers)
COMPONENTS = {"web": ("web", ["web"]), "beat": ("beat", ["beat"]), "flower": ("flower", ["flower"]),
              "exporter": ("exporter", ["celery-exporter", "queue-metrics"]),
              "workers.poolDefaults": ("worker-default", ["worker"])}


def spec_of(docs, suffix):
    return pod_spec(docs.get("Deployment", f"rel-celery-stack-{suffix}"))


@pytest.mark.parametrize("key", COMPONENTS)
def test_component_takes_extra_volumes_mounts_init_containers_and_sidecars(key):
    suffix, main = COMPONENTS[key]
    spec = spec_of(render(set_values={f"{key}.{k}": v for k, v in EXTRAS.items()}), suffix)
    assert [v["name"] for v in spec["volumes"]] == ["tmp", "db-ca"]
    containers = {c["name"]: c for c in spec["containers"]}
    assert list(containers) == [*main, "cloud-sql-proxy"]  # the chart's containers first
    for name in main:
        assert containers[name]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, CA_MOUNT]
    inits = [c["name"] for c in spec["initContainers"]]
    assert inits[-1] == "fetch-models"
    # wait-for-migrations talks to the database too (a CA bundle mounted for it must reach it).
    for init in spec["initContainers"]:
        if init["name"] == "wait-for-migrations":
            assert CA_MOUNT in init["volumeMounts"]


def test_defaults_add_nothing(default_docs):
    for suffix, main in COMPONENTS.values():
        spec = spec_of(default_docs, suffix)
        assert [c["name"] for c in spec["containers"]] == main
        assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]
        assert [c["name"] for c in spec.get("initContainers", [])] in ([], ["wait-for-migrations"])


def test_a_pool_overrides_pool_defaults_extras():
    docs = render(set_values={"workers.poolDefaults.sidecars": [SIDECAR],
                              "workers.pools.high.sidecars": [], "workers.pools.high.initContainers": [INIT]})
    assert [c["name"] for c in spec_of(docs, "worker-default")["containers"]] == ["worker", "cloud-sql-proxy"]
    high = spec_of(docs, "worker-high")
    assert [c["name"] for c in high["containers"]] == ["worker"]
    assert [c["name"] for c in high["initContainers"]] == ["wait-for-migrations", "fetch-models"]


def test_pool_tmp_size_and_medium():
    docs = render(set_values={"workers.pools.default.tmp": {"sizeLimit": "20Gi"},
                              "workers.pools.high.tmp": {"sizeLimit": "512Mi", "medium": "Memory"}})
    assert spec_of(docs, "worker-default")["volumes"][0] == {"name": "tmp", "emptyDir": {"sizeLimit": "20Gi"}}
    assert spec_of(docs, "worker-high")["volumes"][0] == {
        "name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}}
    # Other components keep the chart's 256Mi.
    assert spec_of(docs, "web")["volumes"][0]["emptyDir"] == {"sizeLimit": "256Mi"}


@pytest.mark.parametrize(("values", "message"), [
    ({"workers.pools.high.tmp": {"sizeLimit": "2GB"}}, "/workers/pools/high/tmp/sizeLimit"),
    ({"workers.poolDefaults.tmp": {"medium": "HugePages"}}, "/workers/poolDefaults/tmp/medium"),
    ({"web.sidecars": [{"name": "proxy"}]}, "/web/sidecars/0"),
    ({"beat.extraVolumeMounts": [{"name": "x"}]}, "/beat/extraVolumeMounts/0"),
    ({"flower.extraVolumes": [{"name": "tmp", "emptyDir": {}}]}, "flower.extraVolumes: the volume name tmp"),
    ({"exporter.extraVolumeMounts": [{"name": "x", "mountPath": "/tmp/"}]}, "exporter.extraVolumeMounts: /tmp"),
    ({"workers.pools.high.sidecars": [{"name": "worker", "image": "x"}]},
     "workers.pools.high.sidecars: the container name worker"),
    ({"web.initContainers": [{"name": "wait-for-migrations", "image": "x"}]},
     "web.initContainers: the container name wait-for-migrations"),
])
def test_bad_extras_are_refused_naming_the_value(values, message):
    assert message in render_error(set_values=values)
