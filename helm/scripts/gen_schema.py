#!/usr/bin/env python3
"""Writes helm/celery-stack/values.schema.json.

The schema is kept as Python so its shared pieces (image, probe, resources, pool)
are defined once; the JSON file is committed and `make helm-check` fails if it
differs from this generator's output.
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).resolve().parents[1] / "celery-stack" / "values.schema.json"


def obj(props, required=(), additional=False, **kw):
    d = {"type": "object", "properties": props, "additionalProperties": additional}
    if required:
        d["required"] = list(required)
    d.update(kw)
    return d


STR = {"type": "string"}
BOOL = {"type": "boolean"}
ANY_OBJ = {"type": "object"}
ANY_LIST = {"type": "array"}
POS_INT = {"type": "integer", "minimum": 1}
NONNEG_INT = {"type": "integer", "minimum": 0}
ENV_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"
RATE = {"type": "string", "pattern": "^$|^[0-9]+/[0-9]*[smhd]$",
        "description": "N/period with period s, m, h or d (e.g. 600/m, 5/10m); empty turns it off"}

image = obj({
    "registry": STR,
    "repository": {"type": "string", "minLength": 1},
    "tag": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{0,128}$"},
    "digest": {"type": "string", "pattern": "^(sha256:[a-f0-9]{64})?$",
               "description": "empty or sha256:<64 hex>"},
    "pullPolicy": {"type": "string", "enum": ["", "Always", "IfNotPresent", "Never"]},
})
# Kubernetes quantities (the API server refuses "2GB" or "512mb"); other resource names pass.
quantities = {"type": "object", "properties": {
    "cpu": {"type": ["string", "number"], "pattern": "^[0-9]+([.][0-9]+)?m?$",
            "description": "cores: 1, 0.5, 500m"},
    "memory": {"type": ["string", "integer"], "pattern": "^[0-9]+([.][0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$",
               "description": "bytes with a Kubernetes suffix: 512Mi, 2Gi, 2G (not 2GB)"}}}
resources = obj({"requests": quantities, "limits": quantities, "claims": ANY_LIST})
probe = obj({
    "initialDelaySeconds": NONNEG_INT, "periodSeconds": POS_INT, "timeoutSeconds": POS_INT,
    "failureThreshold": POS_INT, "successThreshold": POS_INT,
    "terminationGracePeriodSeconds": POS_INT,
})
pdb = obj({"enabled": BOOL, "maxUnavailable": {"type": ["integer", "string"]},
           "minAvailable": {"type": ["integer", "string"]}})
ingress = obj({
    "enabled": BOOL, "className": STR, "annotations": ANY_OBJ, "tls": ANY_LIST,
    "hosts": {"type": "array", "items": obj({
        "host": {"type": "string", "minLength": 1},
        "paths": {"type": "array", "items": obj({
            "path": STR, "pathType": {"enum": ["Prefix", "Exact", "ImplementationSpecific"]}},
            required=["path"])},
    }, required=["host"])},
})
service = obj({"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
               "port": {"type": "integer", "minimum": 1, "maximum": 65535},
               "annotations": ANY_OBJ})
env_list = {"type": "array", "items": {"type": "object", "required": ["name"]}}
scheduling = {"nodeSelector": ANY_OBJ, "tolerations": ANY_LIST, "affinity": ANY_OBJ,
              "podAnnotations": ANY_OBJ}
behavior = obj({"scaleUp": ANY_OBJ, "scaleDown": ANY_OBJ})
SECRET_NAME = {"type": "string", "maxLength": 253,
               "pattern": "^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
               "description": "a Secret name (DNS-1123 subdomain: lower case, digits, '-', '.')"}
# Plain Kubernetes objects added to a component's pod; the API server checks their fields.
containers = {"type": "array", "items": {"type": "object", "required": ["name", "image"]}}
extras = {
    "extraVolumes": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    "extraVolumeMounts": {"type": "array", "items": {"type": "object", "required": ["name", "mountPath"]}},
    "initContainers": containers,
    "sidecars": containers,
}

autoscaling = obj({
    "type": {"enum": ["none", "keda", "hpa"],
             "description": "One autoscaler per pool: none (fixed replicas), keda (ScaledObject) or hpa (HorizontalPodAutoscaler). KEDA and HPA are mutually exclusive by construction."},
    "minReplicas": {"type": "integer", "minimum": 0, "maximum": 1000},
    "maxReplicas": {"type": "integer", "minimum": 1, "maximum": 1000},
    "targetPerReplica": {"type": "integer", "minimum": 0,
                         "description": "backlog one replica carries; 0 = the pool's concurrency"},
    "behavior": behavior,
    "keda": obj({
        "trigger": {"enum": ["prometheus", "redis"]},
        "pollingInterval": POS_INT,
        "cooldownPeriod": NONNEG_INT,
        "initialCooldownPeriod": NONNEG_INT,
        "activationThreshold": NONNEG_INT,
        "fallback": obj({"failureThreshold": NONNEG_INT, "replicas": NONNEG_INT}),
        "prometheus": obj({
            "serverAddress": {"type": "string", "pattern": "^https?://"},
            "namespaced": BOOL, "ignoreNullValues": BOOL, "query": STR,
            "authModes": {"enum": ["", "bearer", "basic", "tls", "tls,bearer", "tls,basic"],
                          "description": "KEDA prometheus trigger authModes; needs authSecret.name"},
            "authSecret": obj({"name": SECRET_NAME, "keys": obj({
                p: {"type": "string", "minLength": 1}
                for p in ("bearerToken", "username", "password", "ca", "cert", "key")})})}),
        "redis": obj({
            "address": {"type": "string", "pattern": "^$|^[^:/]+:[0-9]+$",
                        "description": "host:port"},
            "databaseIndex": {"type": "integer", "minimum": 0, "maximum": 15},
            "enableTLS": BOOL,
            "passwordSecret": obj({"name": STR, "key": STR}),
            "prioritySteps": {"type": "array", "minItems": 1,
                              "items": {"type": "integer", "minimum": 0, "maximum": 255}}}),
        "extraTriggers": {"type": "array", "items": {"type": "object", "required": ["type"]}},
    }),
    "hpa": obj({
        "metric": {"enum": ["cpu", "external"]},
        "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
        "externalMetricName": {"type": "string", "minLength": 1}}),
})

pool_props = {
    "enabled": BOOL,
    "image": image,
    "queues": {"type": "array", "minItems": 1, "uniqueItems": True,
               "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]+$"},
               "description": "queues this pool consumes (at least one)"},
    "routes": {"type": "array", "uniqueItems": True,
               "items": {"type": "string", "pattern": "^[A-Za-z0-9_.*?\\[\\]-]+$"},
               "description": "task names (or Celery glob patterns) routed to the pool's first queue"},
    "concurrency": {"type": "integer", "minimum": 1, "maximum": 512},
    "pool": {"enum": ["prefork", "threads", "solo", "gevent", "eventlet"]},
    "softTimeLimit": NONNEG_INT,
    "timeLimit": POS_INT,
    "terminationGracePeriodSeconds": {"type": ["integer", "null"], "minimum": 1,
                                      "description": "null = timeLimit + 30"},
    "prefetchMultiplier": {"type": "integer", "minimum": 1, "maximum": 64,
                           "description": "messages reserved per process; 1 keeps the backlog visible to the autoscaler"},
    "maxTasksPerChild": NONNEG_INT,
    "maxMemoryPerChild": NONNEG_INT,
    "replicas": NONNEG_INT,
    "resources": resources,
    "strategy": obj({"type": {"enum": ["RollingUpdate", "Recreate"]}, "rollingUpdate": ANY_OBJ}),
    "startupProbe": probe, "livenessProbe": probe, "readinessProbe": probe,
    "pdb": pdb,
    "safeToEvict": BOOL,
    "autoscaling": autoscaling,
    "alerts": obj({
        "tier": {"enum": ["high", "default"],
                 "description": "high: critical alerts within minutes; default: warnings after 10-15 minutes"},
        "queueDepth": POS_INT,
        "waitP95Seconds": {"type": "number", "exclusiveMinimum": 0},
        "oldestMessageSeconds": POS_INT,
    }),
    "extraEnv": env_list,
    "tmp": obj({"sizeLimit": quantities["properties"]["memory"],
                "medium": {"enum": ["", "Memory"],
                           "description": "\"\" = the node's disk; Memory = tmpfs, counted against the memory limit"}}),
    "priorityClassName": STR,
    "topologySpreadConstraints": {"type": "array", "items": {
        "type": "object", "required": ["maxSkew", "topologyKey", "whenUnsatisfiable"]}},
    "podLabels": ANY_OBJ,
    "serviceAccount": obj({"create": BOOL, "name": {"type": "string", "maxLength": 253,
                                                    "pattern": "^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                                                    "description": "a ServiceAccount name (DNS-1123 subdomain)"},
                           "annotations": ANY_OBJ}),
    **scheduling, **extras,
}
pool = obj(pool_props)
pool_defaults = obj(pool_props, required=[
    "queues", "routes", "concurrency", "softTimeLimit", "timeLimit", "prefetchMultiplier",
    "autoscaling", "alerts", "resources"])


def component(extra):
    return obj({"enabled": BOOL, "image": image, "resources": resources,
                "extraEnv": env_list, **scheduling, **extras, **extra})


schema = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "celery-stack values",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "global": ANY_OBJ,
        "nameOverride": STR, "fullnameOverride": {"type": "string", "maxLength": 40},
        # `digest` is accepted here only for templates/validate.yaml to refuse it with a
        # message naming the per-component keys.
        "image": obj({**image["properties"], "registry": STR, "digest": STR}),
        "imagePullSecrets": ANY_LIST,
        "secrets": obj({"existingSecret": SECRET_NAME, "djangoSecretKey": STR, "databaseUrl": STR,
                        "brokerUrl": STR, "flowerBasicAuth": {"type": "string", "pattern": "^$|^[^:]+:.+$",
                                                              "description": "user:password"},
                        "rateLimitRedisUrl": {"type": "string", "pattern": "^$|^rediss?://",
                                              "description": "redis:// URL for the web's rate limits"},
                        **{name: obj({"secretName": SECRET_NAME,
                                      "key": {"type": "string", "pattern": "^$|^[-._a-zA-Z0-9]+$",
                                              "description": "a key of that Secret (letters, digits, '-', '_', '.')"}})
                           for name in ("databaseUrlFrom", "brokerUrlFrom", "rateLimitRedisUrlFrom")}}),
        "config": obj({
            "debug": BOOL,
            "logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
            "celeryLogLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
            "allowedHosts": {"type": "array", "items": STR},
            "csrfTrustedOrigins": {"type": "array", "items": {"type": "string", "pattern": "^https?://"}},
            "brokerVisibilityTimeout": {"type": ["integer", "null"], "minimum": 1},
            "apiMaxCountdown": NONNEG_INT,
            "heartbeatMaxAge": POS_INT,
            "apiLongJobMaxSeconds": NONNEG_INT,
            "rateLimits": obj({
                "enabled": BOOL,
                **{key: RATE for key in ("enqueue", "enqueuePerIp", "signupPerIp",
                                         "passwordResetPerIp", "mailPerAddress", "loginPerIp")},
                "trustedProxies": NONNEG_INT,
            }, required=["enabled", "trustedProxies"]),
            "extraEnv": {
                "type": "object",
                "propertyNames": {"pattern": ENV_NAME},
                "additionalProperties": {"type": ["string", "number", "boolean"]},
                "description": "non-secret env only: credentials belong in the Secret (checked in templates/validate.yaml)",
            },
        }),
        "podSecurityContext": ANY_OBJ,
        "containerSecurityContext": ANY_OBJ,
        "serviceAccount": obj({"create": BOOL, "name": STR, "annotations": ANY_OBJ,
                               "automountServiceAccountToken": BOOL}),
        "topologySpread": obj({"enabled": BOOL, "maxSkew": POS_INT,
                               "topologyKeys": {"type": "array", "items": STR},
                               "whenUnsatisfiable": {"enum": ["ScheduleAnyway", "DoNotSchedule"]}}),
        "nodeSelector": ANY_OBJ, "tolerations": ANY_LIST, "affinity": ANY_OBJ,
        "podAnnotations": ANY_OBJ, "podLabels": ANY_OBJ, "priorityClassName": STR,
        "web": component({
            "replicas": POS_INT,
            "gunicorn": obj({"workers": POS_INT, "threads": POS_INT, "timeout": POS_INT}),
            "service": service, "ingress": ingress,
            "metricsPort": {"type": "integer", "minimum": 1024, "maximum": 65535, "not": {"const": 8000},
                            "description": "gunicorn's /metrics port; never the public 8000"},
            "adminPath": {"type": "string", "pattern": "^$|^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
                          "description": "URL prefix of the Django admin without slashes; empty turns it off"},
            "hsts": obj({"seconds": NONNEG_INT, "includeSubdomains": BOOL, "preload": BOOL}),
            "startupProbe": probe, "livenessProbe": probe, "readinessProbe": probe,
            "terminationGracePeriodSeconds": POS_INT, "pdb": pdb,
            "autoscaling": obj({"enabled": BOOL, "minReplicas": POS_INT, "maxReplicas": POS_INT,
                                "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100}}),
        }),
        "workers": obj({
            "poolDefaults": pool_defaults,
            "pools": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"pattern": "^[a-z]([-a-z0-9]{0,14}[a-z0-9])?$",
                                  "description": "pool names are DNS labels of at most 16 characters (they end up in object names)"},
                "additionalProperties": pool,
            },
        }, required=["poolDefaults", "pools"]),
        "beat": component({
            "startupProbe": probe, "livenessProbe": probe, "readinessProbe": probe,
            "terminationGracePeriodSeconds": POS_INT,
        }),
        "flower": component({
            "replicas": {"type": "integer", "minimum": 0, "maximum": 1,
                         "description": "Flower keeps its state in memory: more replicas would each show a different view"},
            "maxTasks": POS_INT, "service": service, "ingress": ingress,
            "livenessProbe": probe, "readinessProbe": probe,
        }),
        "exporter": obj({
            "enabled": BOOL, "image": image,
            "celeryExporter": obj({"resources": resources, "extraEnv": env_list}),
            "queueMetrics": obj({"databaseGauges": BOOL, "resources": resources, "extraEnv": env_list}),
            "service": obj({"annotations": ANY_OBJ}),
            **scheduling, **extras,
        }),
        "migrations": obj({"enabled": BOOL, "useHelmHooks": BOOL, "waitForMigrations": BOOL, "backoffLimit": NONNEG_INT,
                           "activeDeadlineSeconds": POS_INT, "ttlSecondsAfterFinished": NONNEG_INT,
                           "resources": resources, **scheduling}),
        "monitoring": obj({
            "serviceMonitor": obj({"enabled": BOOL, "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                   "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                   "labels": ANY_OBJ}),
            "prometheusRule": obj({"enabled": BOOL, "labels": ANY_OBJ,
                                   "disabledAlerts": {"type": "array", "uniqueItems": True,
                                                      "items": {"type": "string", "minLength": 1}}}),
            "grafanaDashboards": obj({"enabled": BOOL, "namespace": STR, "labels": ANY_OBJ,
                                      "annotations": ANY_OBJ}),
        }),
        "networkPolicy": obj({"enabled": BOOL, "webFrom": ANY_LIST, "flowerFrom": ANY_LIST,
                              "metricsFrom": ANY_LIST, "redisExtraFrom": ANY_LIST,
                              "egress": obj({
                                  "enabled": BOOL,
                                  **{name: obj({"to": {"type": "array", "items": ANY_OBJ},
                                                "ports": {"type": "array", "items": {
                                                    "type": "integer", "minimum": 1, "maximum": 65535}}})
                                     for name in ("dns", "database", "broker", "rateLimitRedis", "smtp")},
                                  "extra": obj({c: {"type": "array", "items": ANY_OBJ}
                                                for c in ("web", "worker", "beat", "flower", "exporter",
                                                          "migrate", "test")}),
                              })}),
        "redis": obj({"enabled": BOOL, "image": image,
                      "password": {"type": "string", "pattern": "^[^\\s\"'\\\\]*$",
                                   "description": "no spaces, quotes or backslashes: it becomes a line of redis.conf"},
                      "persistence": obj({"enabled": BOOL, "size": STR, "storageClass": STR}),
                      "maxmemory": {"type": "string", "pattern": "^[0-9]+(kb|mb|gb)$",
                                    "description": "below the memory limit, e.g. 200mb"},
                      "resources": resources}),
        "postgresql": obj({"enabled": BOOL, "image": image,
                           "database": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"},
                           "username": {"type": "string", "pattern": "^[a-z_][a-z0-9_]*$"},
                           "password": STR,
                           "persistence": obj({"enabled": BOOL, "size": STR, "storageClass": STR}),
                           "resources": resources, **scheduling}),
        "tests": obj({"enabled": BOOL, "timeoutSeconds": POS_INT, **scheduling}),
    },
}

text = json.dumps(schema, indent=2) + "\n"
if "--check" in sys.argv:
    if OUT.read_text() != text:
        sys.exit(f"{OUT} is stale: run `python3 helm/scripts/gen_schema.py`")
else:
    OUT.write_text(text)
