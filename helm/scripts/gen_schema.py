#!/usr/bin/env python3
"""Writes helm/celery-stack/values.schema.json and the values reference, VALUES.md.

The schema is kept as Python so its shared pieces (image, probe, resources, pool)
are defined once, and so are the descriptions (DESCRIPTIONS, below): every key has one,
or this script fails. VALUES.md lists every key with its type, its default (from
values.yaml) and its description. Both files are committed; `make helm-check` (with
--check) fails if either differs from this generator's output.
"""
import json
import pathlib
import sys

CHART = pathlib.Path(__file__).resolve().parents[1] / "celery-stack"
OUT = CHART / "values.schema.json"
VALUES = CHART / "values.yaml"
REFERENCE = CHART / "VALUES.md"


def obj(props, required=(), additional=False, **kw):
    d = {"type": "object", "properties": props, "additionalProperties": additional}
    if required:
        d["required"] = list(required)
    d.update(kw)
    return d


STR = {"type": "string"}
BOOL = {"type": "boolean"}
NULL_BOOL = {"type": ["boolean", "null"], "description": "null = on unless broker.type is sqs"}
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
        "trigger": {"enum": ["prometheus", "redis", "aws-sqs-queue"]},
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
        "sqs": obj({
            "identityOwner": {"enum": ["keda", "workload"]},
            "roleArn": {"type": "string", "pattern": "^$|^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$",
                        "description": "arn:aws:iam::<account>:role/<name>"}}),
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


def component(extra, enabled=BOOL):
    return obj({"enabled": enabled, "image": image, "resources": resources,
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
        "broker": obj({
            "type": {"enum": ["url", "sqs"]},
            "sqs": obj({
                # Commercial, GovCloud, China and ISO partitions: us-east-1, us-gov-west-1, cn-north-1.
                "region": {"type": "string", "pattern": "^$|^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$",
                           "description": "an AWS region, e.g. eu-west-1"},
                "accountId": {"type": "string", "pattern": "^$|^[0-9]{12}$",
                              "description": "12 digits"},
                # SQS queue names: letters, digits, - and _, 80 characters with the queue's own
                # name (checked per queue in templates/validate.yaml).
                "queuePrefix": {"type": "string", "pattern": "^[A-Za-z0-9_-]*$", "maxLength": 79,
                                "description": "letters, digits, - and _"}}),
        }, required=["type"]),
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
        "flower": component(enabled=NULL_BOOL, extra={
            "replicas": {"type": "integer", "minimum": 0, "maximum": 1,
                         "description": "Flower keeps its state in memory: more replicas would each show a different view"},
            "maxTasks": POS_INT, "service": service, "ingress": ingress,
            "livenessProbe": probe, "readinessProbe": probe,
        }),
        "exporter": obj({
            "enabled": NULL_BOOL, "image": image,
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



# ---- Descriptions: every key of the schema has one (the generator refuses a key without).
# Looked up by the longest dotted suffix of the key's path, so a shared piece (image, probe,
# resources) is described once; `{parent}` is the name of the key above. A description written
# inline in the schema above wins.
DESCRIPTIONS = {
    # top level
    "global": "Free-form values shared with subcharts; the chart reads nothing from it.",
    "nameOverride": "Replaces the chart name (celery-stack) in object names.",
    "fullnameOverride": "Replaces `<release>-celery-stack` in object names (at most 40 characters).",
    "image": "Image of {parent}: `<registry>/<repository>:<tag>[@<digest>]`; a field left empty comes from the top-level `image`.",
    "root.image": "Defaults for every component's image; a component overrides any field under its own `image`. A digest is per component only.",
    "image.registry": "Registry and path prefix, e.g. ghcr.io/celery-stack.",
    "image.repository": "Repository name under the registry.",
    "image.tag": "Tag; empty = the chart's appVersion.",
    "image.digest": "sha256 digest pinning the image (recommended in production); empty = the tag alone.",
    "image.pullPolicy": "Always, IfNotPresent or Never; empty = Kubernetes' default.",
    "imagePullSecrets": "Secrets for pulling the images, as in a pod spec: [{name: regcred}].",
    "broker": "The broker: the URL in secrets.brokerUrl (or the in-chart Redis), or Amazon SQS.",
    "broker.type": "url: secrets.brokerUrl (redis:// or amqp://) or redis.enabled; sqs: Amazon SQS (CELERY_BROKER_URL=sqs://, credentials from IRSA / EKS Pod Identity; images built with APP_SQS=1).",
    "broker.sqs": "Amazon SQS (broker.type sqs); region and accountId are then required.",
    "sqs.region": "SQS_REGION: the queues' region.",
    "sqs.accountId": "SQS_ACCOUNT_ID: the account owning the queues; they are predefined, never listed or created by the app.",
    "sqs.queuePrefix": "SQS_QUEUE_PREFIX: prepended to every queue name; with the queue's name at most 80 characters.",
    "secrets": "Credentials: the Secret holding DJANGO_SECRET_KEY, DATABASE_URL, CELERY_BROKER_URL, FLOWER_BASIC_AUTH and RATELIMIT_REDIS_URL.",
    "secrets.existingSecret": "A Secret you manage (External Secrets, Sealed Secrets, Vault) with those keys; when set the chart creates none and ignores the values below.",
    "secrets.djangoSecretKey": "DJANGO_SECRET_KEY; empty = generated by helm install and kept across upgrades (required under helm template).",
    "secrets.databaseUrl": "DATABASE_URL (postgres://...); required unless postgresql.enabled or databaseUrlFrom.",
    "secrets.brokerUrl": "CELERY_BROKER_URL (redis:// or amqp://); required unless redis.enabled or brokerUrlFrom; ignored with broker.type sqs.",
    "secrets.flowerBasicAuth": "Flower's user:password; empty = generated by helm install (required under helm template).",
    "secrets.databaseUrlFrom": "DATABASE_URL from a key of another Secret (e.g. CloudNativePG's `<cluster>-app`, key `uri`); pods do not roll when it changes.",
    "secrets.brokerUrlFrom": "CELERY_BROKER_URL from a key of another Secret.",
    "secrets.rateLimitRedisUrlFrom": "RATELIMIT_REDIS_URL from a key of another Secret.",
    "secretName": "Name of that Secret; empty = not used.",
    "From.key": "Key in that Secret holding the URL.",
    "config": "Non-secret settings, rendered into a ConfigMap; pods roll when it changes.",
    "config.debug": "DJANGO_DEBUG; never in production.",
    "config.logLevel": "Django's log level.",
    "config.celeryLogLevel": "The workers' and beat's --loglevel; WARNING drops the two log lines per task.",
    "config.allowedHosts": "Extra DJANGO_ALLOWED_HOSTS; the pod IP, localhost, the web Service names and the Ingress hosts are always added.",
    "config.csrfTrustedOrigins": "Extra DJANGO_CSRF_TRUSTED_ORIGINS; https://<each Ingress TLS host> is added.",
    "config.brokerVisibilityTimeout": "Redis redelivery window (s) for every pool; null = per pool, its timeLimit + 30. If set, it must exceed every timeLimit.",
    "config.apiMaxCountdown": "The largest `countdown` (s) the API accepts.",
    "config.heartbeatMaxAge": "Seconds without progress after which a worker's heartbeat counts as stale and it exits.",
    "config.apiLongJobMaxSeconds": "The longest long_job the API accepts (s); at most poolDefaults.softTimeLimit.",
    "config.rateLimits": "The API's rate limits, counted in Redis (the broker's database 1, or secrets.rateLimitRedisUrl).",
    "rateLimits.enabled": "false turns every rate limit off.",
    "rateLimits.enqueue": "Enqueues and reports per token or logged-in user.",
    "rateLimits.enqueuePerIp": "Enqueues and reports per client address.",
    "rateLimits.signupPerIp": "Signups per client address.",
    "rateLimits.passwordResetPerIp": "Password resets per client address.",
    "rateLimits.mailPerAddress": "Mails to one address, whoever asks; over it they are dropped silently.",
    "rateLimits.loginPerIp": "Login form POSTs (page and admin) per client address.",
    "rateLimits.trustedProxies": "Proxies in front of gunicorn whose X-Forwarded-For is trusted (an Ingress controller: 1); 0 = the TCP peer.",
    "podSecurityContext": "Pod securityContext of every component (data services excepted): non-root 10001, RuntimeDefault seccomp.",
    "containerSecurityContext": "Container securityContext of every component: non-root, read-only root filesystem, no privilege escalation, all capabilities dropped.",
    "root.serviceAccount": "The ServiceAccount every pod runs as.",
    "serviceAccount.create": "Create it; false = use `name` (or the namespace's default).",
    "serviceAccount.name": "Its name; empty = the chart's full name.",
    "serviceAccount.annotations": "Annotations of the ServiceAccount (e.g. an IRSA or Workload Identity role).",
    "serviceAccount.automountServiceAccountToken": "Mount an API token in the pods; they never talk to the Kubernetes API.",
    "topologySpread": "Spread each component's replicas over nodes and zones.",
    "topologySpread.enabled": "Add topologySpreadConstraints to every Deployment.",
    "topologySpread.maxSkew": "Largest allowed difference in replicas between two domains.",
    "topologySpread.topologyKeys": "Node labels to spread over, one constraint each.",
    "topologySpread.whenUnsatisfiable": "ScheduleAnyway (a preference) or DoNotSchedule (a rule).",
    "nodeSelector": "nodeSelector of {parent}'s pods; empty = the top-level one.",
    "root.nodeSelector": "nodeSelector of every pod unless its component sets one.",
    "tolerations": "Tolerations of {parent}'s pods; empty = the top-level ones.",
    "root.tolerations": "Tolerations of every pod unless its component sets some.",
    "affinity": "Affinity of {parent}'s pods; empty = the top-level one.",
    "root.affinity": "Affinity of every pod unless its component sets one.",
    "podAnnotations": "Annotations of {parent}'s pods, merged over the top-level ones.",
    "root.podAnnotations": "Annotations of every pod.",
    "podLabels": "Labels of {parent}'s pods, merged over the top-level ones.",
    "root.podLabels": "Labels of every pod.",
    "priorityClassName": "PriorityClass of {parent}'s pods; empty = the top-level one.",
    "root.priorityClassName": "PriorityClass of every pod unless its component sets one.",
    "extraEnv": "More environment variables of {parent}'s container, as in a pod spec (name/value or valueFrom).",
    "extraVolumes": "Extra volumes of {parent}'s pods (plain Kubernetes objects; the name `tmp` is the chart's).",
    "extraVolumeMounts": "Mounts of those volumes in {parent}'s container(s) (the path /tmp is the chart's).",
    "initContainers": "Init containers of {parent}'s pods, after wait-for-migrations.",
    "sidecars": "Sidecar containers of {parent}'s pods.",
    "resources": "CPU and memory of {parent}'s container.",
    "resources.requests": "What the scheduler reserves: cpu (1, 500m), memory (512Mi).",
    "resources.limits": "The ceiling: cpu throttles, memory OOM-kills.",
    "resources.claims": "Dynamic resource claims, as in a container spec.",
    "enabled": "Turn on {parent}.",
    "poolDefaults.enabled": "Deploy the pool; false leaves it out, its queues and routes too.",
    "replicas": "Replica count of {parent}.",
    "startupProbe": "Startup probe of {parent}: the other probes wait until it passes.",
    "livenessProbe": "Liveness probe of {parent}: failing restarts the container.",
    "readinessProbe": "Readiness probe of {parent}: failing takes the pod out of its Service.",
    "Probe.initialDelaySeconds": "Seconds before the first probe.",
    "Probe.periodSeconds": "Seconds between probes.",
    "Probe.timeoutSeconds": "Seconds a probe may take.",
    "Probe.failureThreshold": "Failures in a row before it counts as failed.",
    "Probe.successThreshold": "Successes in a row before it counts as passed.",
    "Probe.terminationGracePeriodSeconds": "Grace period when this probe kills the container; empty = the pod's.",
    "terminationGracePeriodSeconds": "Seconds between SIGTERM and SIGKILL for {parent}'s pods.",
    "pdb": "PodDisruptionBudget of {parent}.",
    "pdb.enabled": "Create it.",
    "pdb.maxUnavailable": "Pods a voluntary disruption may take at once (number or percentage).",
    "pdb.minAvailable": "Pods that must stay up (instead of maxUnavailable).",
    "service": "Service of {parent}.",
    "service.type": "ClusterIP, NodePort or LoadBalancer.",
    "service.port": "Service port.",
    "service.annotations": "Annotations of the Service.",
    "ingress": "Ingress of {parent}.",
    "ingress.enabled": "Create it.",
    "ingress.className": "IngressClass; empty = the cluster's default.",
    "ingress.annotations": "Annotations of the Ingress (e.g. cert-manager, body size).",
    "ingress.hosts": "[{host: app.example.com, paths: [{path: /, pathType: Prefix}]}].",
    "ingress.tls": "[{secretName: app-tls, hosts: [app.example.com]}]; with TLS the web turns on secure cookies, the SSL redirect and HSTS.",
    # web
    "web": "The Django web app (gunicorn, :8000).",
    "web.gunicorn": "gunicorn's process model.",
    "gunicorn.workers": "Worker processes per pod.",
    "gunicorn.threads": "Threads per worker process.",
    "gunicorn.timeout": "Seconds a request may take before gunicorn restarts its worker.",
    "web.hsts": "Strict-Transport-Security, sent only with Ingress TLS.",
    "hsts.seconds": "max-age in seconds.",
    "hsts.includeSubdomains": "includeSubDomains.",
    "hsts.preload": "preload.",
    "web.autoscaling": "A CPU HorizontalPodAutoscaler for web.",
    "web.autoscaling.enabled": "Create it (web.replicas is then the starting size).",
    "web.autoscaling.minReplicas": "Fewest replicas.",
    "web.autoscaling.maxReplicas": "Most replicas.",
    "targetCPUUtilizationPercentage": "Average CPU utilisation (% of requests) to aim for.",
    # workers
    "workers": "Celery workers: one Deployment per pool.",
    "workers.poolDefaults": "Every key a pool leaves out comes from here, merged key by key.",
    "workers.pools": "The pools, by name (a DNS label of at most 16 characters); each takes any key of poolDefaults. The defaults come from pools.yaml.",
    "concurrency": "Processes (or threads) per worker pod.",
    "poolDefaults.pool": "Celery execution pool: prefork, threads, solo, gevent or eventlet.",
    "softTimeLimit": "Seconds before SoftTimeLimitExceeded is raised in a task.",
    "timeLimit": "Seconds before a task's process is killed (hard limit).",
    "maxTasksPerChild": "Tasks a pool process runs before it is replaced.",
    "maxMemoryPerChild": "KiB of resident memory after which a pool process is replaced; keep below memory limit / concurrency.",
    "poolDefaults.replicas": "Fixed replica count when autoscaling.type is none.",
    "strategy": "Deployment strategy of the pool.",
    "strategy.type": "RollingUpdate or Recreate.",
    "strategy.rollingUpdate": "maxSurge / maxUnavailable; maxUnavailable 0 keeps the pool at size while old pods drain.",
    "safeToEvict": "false adds cluster-autoscaler.kubernetes.io/safe-to-evict: \"false\".",
    "poolDefaults.autoscaling": "How the pool scales on its backlog (queued + running tasks).",
    "minReplicas": "Fewest replicas (0 allows scale-to-zero with KEDA).",
    "maxReplicas": "Most replicas.",
    "autoscaling.behavior": "HPA scaling behaviour (KEDA passes it to its HPA).",
    "behavior.scaleUp": "stabilizationWindowSeconds, policies and selectPolicy for scaling up.",
    "behavior.scaleDown": "stabilizationWindowSeconds, policies and selectPolicy for scaling down.",
    "autoscaling.keda": "The KEDA ScaledObject (autoscaling.type keda).",
    "keda.trigger": "prometheus (the companion's per-pool backlog; default), redis (reads the broker's lists; queued only) or aws-sqs-queue (broker.type sqs: each queue's visible + in-flight messages).",
    "keda.sqs": "The aws-sqs-queue trigger's AWS identity: a TriggerAuthentication with podIdentity provider aws (KEDA >= 2.13).",
    "sqs.identityOwner": "keda: the KEDA operator's role (or roleArn); workload: the role of the pool's ServiceAccount.",
    "sqs.roleArn": "A role the KEDA operator assumes; empty = its own. Not with identityOwner workload.",
    "keda.pollingInterval": "Seconds between KEDA's metric reads.",
    "keda.cooldownPeriod": "Seconds before the 1 -> 0 step (scale-to-zero only).",
    "keda.initialCooldownPeriod": "Seconds after creation before scale-to-zero may happen.",
    "keda.activationThreshold": "Scale 0 -> 1 when the backlog is greater than this.",
    "keda.fallback": "Replicas to hold when the metric source fails.",
    "fallback.failureThreshold": "Failed polls before the fallback applies.",
    "fallback.replicas": "Replicas held meanwhile.",
    "keda.prometheus": "The prometheus trigger.",
    "prometheus.serverAddress": "Prometheus URL as KEDA reaches it.",
    "prometheus.namespaced": "Filter the query by the release's namespace label.",
    "prometheus.ignoreNullValues": "true: an empty result counts as 0; false: as an error, so the fallback applies.",
    "prometheus.query": "Replaces the whole query; empty = the chart's backlog query.",
    "prometheus.authSecret": "The Secret holding KEDA's Prometheus credentials (with authModes).",
    "authSecret.name": "Its name; empty = no authentication.",
    "authSecret.keys": "Secret key per KEDA parameter, when it differs from the parameter's name.",
    "keys.bearerToken": "Key of the bearer token.",
    "keys.username": "Key of the basic-auth user.",
    "keys.password": "Key of the basic-auth password.",
    "keys.ca": "Key of the CA certificate.",
    "keys.cert": "Key of the client certificate.",
    "keys.key": "Key of the client key.",
    "keda.redis": "The redis trigger: one per list (base and priority sub-lists), summed.",
    "redis.databaseIndex": "Redis database of the broker.",
    "redis.enableTLS": "Connect with TLS.",
    "redis.passwordSecret": "Secret key holding the Redis password.",
    "passwordSecret.name": "Its Secret; empty = no password.",
    "passwordSecret.key": "Its key.",
    "redis.prioritySteps": "Celery's Redis priority_steps; each is a list of its own, `<queue>\\x06\\x16<n>`.",
    "keda.extraTriggers": "More KEDA triggers (memory, cron); KEDA scales to the largest. Only with trigger prometheus.",
    "autoscaling.hpa": "The HorizontalPodAutoscaler (autoscaling.type hpa).",
    "hpa.metric": "cpu, or external (prometheus-adapter serving celery_pool_scaling_signal).",
    "hpa.externalMetricName": "The external metric's name.",
    "alerts": "Per-queue alert thresholds of the pool (monitoring.prometheusRule).",
    "alerts.queueDepth": "Messages waiting before the backlog alert fires.",
    "alerts.oldestMessageSeconds": "Age of the oldest waiting message before its alert fires.",
    "alerts.waitP95Seconds": "p95 publish-to-start wait (s) over which the latency SLO alert fires.",
    "topologySpreadConstraints": "The pool's own constraints; non-empty replaces topologySpread (one without labelSelector spreads the pool's pods).",
    "poolDefaults.serviceAccount": "The pool's own ServiceAccount; neither create nor name = the chart's.",
    "poolDefaults.serviceAccount.create": "Create `<fullname>-worker-<pool>` (or `name`).",
    "poolDefaults.serviceAccount.name": "Its name; without create, an existing ServiceAccount.",
    "tmp": "/tmp of the worker (an emptyDir).",
    "tmp.sizeLimit": "Its size limit.",
    # beat, flower, exporter
    "beat": "celery beat: one replica, Recreate, never autoscaled.",
    "flower": "Flower, broker-only, behind basic auth.",
    "flower.maxTasks": "Tasks Flower keeps in memory.",
    "exporter": "One pod: celery-exporter (:9808) and celery-stack-metrics (:9809); one replica, both consume the event stream.",
    "exporter.celeryExporter": "The celery-exporter container.",
    "exporter.queueMetrics": "The celery-stack-metrics container.",
    "queueMetrics.databaseGauges": "Outbox and dead-letter gauges from the app's database; false = no database credentials in the container.",
    "exporter.service": "The exporter's Service.",
    # migrations
    "migrations": "Database migrations (bin/migrate from the web image).",
    "migrations.useHelmHooks": "true: a pre-install/pre-upgrade hook; false: a plain Job named after a hash of image and config (Argo CD, Flux).",
    "migrations.waitForMigrations": "web, workers and beat wait in an init container until `migrate --check` passes.",
    "migrations.backoffLimit": "Retries of the Job.",
    "migrations.activeDeadlineSeconds": "Seconds the Job may run.",
    "migrations.ttlSecondsAfterFinished": "Seconds a finished Job is kept.",
    # monitoring
    "monitoring": "prometheus-operator objects and Grafana dashboards, generated from monitoring/.",
    "monitoring.serviceMonitor": "ServiceMonitors for web :9100 and the exporters.",
    "serviceMonitor.interval": "Scrape interval.",
    "serviceMonitor.scrapeTimeout": "Scrape timeout.",
    "labels": "Labels of {parent} objects (kube-prometheus-stack selects by its release label).",
    "monitoring.prometheusRule": "PrometheusRules: recording rules, alerts and the per-pool thresholds.",
    "prometheusRule.disabledAlerts": "Alerts to leave out, by name; an unknown name is refused.",
    "monitoring.grafanaDashboards": "A ConfigMap per dashboard for the Grafana sidecar.",
    "grafanaDashboards.namespace": "Where the sidecar looks; empty = the release namespace.",
    "grafanaDashboards.annotations": "Annotations of the ConfigMaps (e.g. a folder).",
    # networkPolicy
    "networkPolicy": "NetworkPolicies: deny ingress except each component's ports from the peers below.",
    "networkPolicy.enabled": "Create them.",
    "networkPolicy.webFrom": "Peers that may reach web :8000 (the ingress controller); this release's pods always may.",
    "networkPolicy.flowerFrom": "Peers that may reach Flower :5555.",
    "networkPolicy.metricsFrom": "Peers that may scrape :9100, :9808, :9809 (Prometheus).",
    "networkPolicy.redisExtraFrom": "More peers of the in-chart Redis (e.g. KEDA's namespace for the redis trigger).",
    "networkPolicy.egress": "Egress rules: each pod reaches only DNS and what its component uses.",
    "egress.broker.ports": "TCP ports of the broker; empty = 6379, or 443 with broker.type sqs.",
    "egress.enabled": "Create them.",
    "egress.dns": "DNS servers.",
    "egress.database": "The database.",
    "egress.broker": "The broker.",
    "egress.rateLimitRedis": "The rate-limit Redis, when it is not the broker.",
    "egress.smtp": "The mail server (workers).",
    "to": "NetworkPolicy peers (ipBlock CIDRs for managed services); empty opens nothing.",
    "ports": "TCP ports (53 is UDP and TCP).",
    "egress.extra": "More egress rules per component.",
    "extra.web": "Egress rules of web.",
    "extra.worker": "Egress rules of the workers.",
    "extra.beat": "Egress rules of beat.",
    "extra.flower": "Egress rules of Flower.",
    "extra.exporter": "Egress rules of the exporters.",
    "extra.migrate": "Egress rules of the migrations Job.",
    "extra.test": "Egress rules of `helm test`.",
    # evaluation data services
    "root.redis": "Evaluation only: a single-pod Redis broker (no backups, no HA).",
    "persistence": "Data on a PersistentVolumeClaim; off = an emptyDir, lost on restart.",
    "persistence.enabled": "Use a PVC.",
    "persistence.size": "Its size.",
    "persistence.storageClass": "Its StorageClass; empty = the cluster's default.",
    "postgresql": "Evaluation only: a single-pod Postgres (no backups, no HA).",
    "postgresql.database": "Database name.",
    "postgresql.username": "User name.",
    "postgresql.password": "Password; empty = generated by helm install (required under helm template).",
    "tests": "`helm test`: enqueue add(2, 3) through the API and wait for 5.",
    "tests.timeoutSeconds": "Seconds the test may take.",
}


def generalize(segment):
    """startupProbe/livenessProbe/readinessProbe -> Probe, databaseUrlFrom... -> From."""
    if segment.endswith("Probe"):
        return "Probe"
    if segment.endswith("UrlFrom"):
        return "From"
    return segment


def lookup(path, used):
    """The DESCRIPTIONS entry for a key path (["root", "web", "image", "tag"]): longest suffix."""
    for i in range(len(path)):
        for candidate in (path[i:], path[i:-1] and [generalize(s) for s in path[i:-1]] + path[-1:]):
            key = ".".join(candidate)
            if candidate and key in DESCRIPTIONS:
                used.add(key)
                return DESCRIPTIONS[key].replace("{parent}", f"`{path[-2]}`" if len(path) > 2 else "it")
    return None


def describe(node, path, used, missing):
    """A copy of node whose every property carries a description (shared pieces stay unshared)."""
    node = dict(node)
    if "properties" in node:
        props = {}
        for name, sub in node["properties"].items():
            sub = dict(sub)
            text = lookup([*path, name], used)
            inline = sub.get("description")
            if text and inline:
                sub["description"] = f"{text} Format: {inline}."
            elif text or inline:
                sub["description"] = text or inline
            else:
                missing.append(".".join([*path[1:], name]))
            if [*path[1:], name] != ["workers", "pools"]:
                sub = describe(sub, [*path, name], used, missing)
            props[name] = sub
        node["properties"] = props
    return node


used, missing = set(), []
schema = describe(schema, ["root"], used, missing)
if missing:
    sys.exit("gen_schema.py: no description for " + ", ".join(missing) + " (add them to DESCRIPTIONS)")
unused = sorted(set(DESCRIPTIONS) - used)
if unused:
    sys.exit("gen_schema.py: DESCRIPTIONS entries that match no key: " + ", ".join(unused))


def type_of(node):
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    t = node.get("type", "any")
    return " or ".join(t) if isinstance(t, list) else t


def cell(value):
    return "`" + json.dumps(value, separators=(", ", ": ")).replace("|", "\\|") + "`"


def rows(node, path, defaults):
    for name, sub in node.get("properties", {}).items():
        key = [*path, name]
        value = defaults.get(name)
        if key == ["workers", "pools"]:
            default = ", ".join(f"`{pool}`" for pool in value) + " (from pools.yaml)"
        elif "properties" in sub:
            default = "_(keys below)_"
        else:
            default = cell(value) if name in defaults else "_(unset)_"
        text = sub["description"].replace("|", "\\|")
        yield f"| `{'.'.join(key)}` | {type_of(sub)} | {default} | {text} |"
        if "properties" in sub and key != ["workers", "pools"]:
            yield from rows(sub, key, value or {})


def values_reference():
    import yaml  # PyYAML: make helm-check runs this with the Helm toolchain's Python

    values = yaml.safe_load(VALUES.read_text())
    out = ["<!-- generated by helm/scripts/gen_schema.py from values.schema.json and values.yaml: do not edit -->",
           "# celery-stack chart: values reference", "",
           "Every key of [values.yaml](values.yaml), its type, its default and what it does; "
           "[values.schema.json](values.schema.json) refuses any other key and any value out of range. "
           "The descriptions live in `helm/scripts/gen_schema.py`; `make helm-check` fails when this file "
           "is out of date.", ""]
    header = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    flat = {name: sub for name, sub in schema["properties"].items() if "properties" not in sub}
    out += ["## Top-level keys", "", *header,
            *rows({"properties": flat}, [], values), ""]
    for name, sub in schema["properties"].items():
        if name not in flat:
            out += [f"## `{name}`", "", sub["description"], "", *header,
                    *rows(sub, [name], values.get(name) or {}), ""]
    return "\n".join(out)


outputs = {OUT: json.dumps(schema, indent=2) + "\n", REFERENCE: values_reference()}
if "--check" in sys.argv:
    stale = [str(path) for path, text in outputs.items() if not path.exists() or path.read_text() != text]
    if stale:
        sys.exit(f"{', '.join(stale)} stale: run `python3 helm/scripts/gen_schema.py`")
else:
    for path, text in outputs.items():
        path.write_text(text)
