{{/* ================================================================ names */}}

{{- define "celery-stack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped base name; components append "-web", "-worker-<pool>"... (kept <= 40 chars so suffixes fit in 63). */}}
{{- define "celery-stack.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "celery-stack.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "celery-stack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "celery-stack.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* "true" when a component runs: (dict "root" $ "component" "flower"). flower.enabled and
     exporter.enabled may be null: on, except on SQS, which carries no task events and no
     remote control (and the exporter image has no boto3); validate.yaml refuses true there. */}}
{{- define "celery-stack.enabled" -}}
{{- $enabled := (get .root.Values .component).enabled -}}
{{- if kindIs "invalid" $enabled -}}
{{- if not (include "celery-stack.sqs" .root) }}true{{ end -}}
{{- else if $enabled }}true{{ end -}}
{{- end -}}

{{/* ================================================================ Amazon SQS */}}

{{/* "true" when the broker is Amazon SQS (broker.type sqs). */}}
{{- define "celery-stack.sqs" -}}
{{- if eq .Values.broker.type "sqs" }}true{{ end -}}
{{- end -}}

{{/* A queue's SQS URL, as config/sqs.py builds it: (dict "root" $ "queue" "high"). */}}
{{- define "celery-stack.sqsQueueUrl" -}}
{{- $s := .root.Values.broker.sqs -}}
{{- printf "https://sqs.%s.amazonaws.com/%s/%s%s" $s.region $s.accountId $s.queuePrefix .queue -}}
{{- end -}}

{{- define "celery-stack.secretName" -}}
{{- default (include "celery-stack.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* ================================================================ labels
Call with (dict "root" $ "component" "web") and optionally "pool" "<name>". */}}

{{- define "celery-stack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "celery-stack.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .pool }}
celery-stack/pool: {{ . }}
{{- end }}
{{- end -}}

{{/* Pod template labels. No helm.sh/chart: a chart bump alone would restart every pod
     (workers drain for up to their grace period). The version is the component's image tag. */}}
{{- define "celery-stack.podLabels" -}}
{{ include "celery-stack.selectorLabels" . }}
{{- $image := (.values | default dict).image | default dict }}
app.kubernetes.io/version: {{ $image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: celery-stack
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* Object labels. */}}
{{- define "celery-stack.labels" -}}
{{ include "celery-stack.podLabels" . }}
helm.sh/chart: {{ include "celery-stack.chart" .root }}
{{- end -}}

{{/* ================================================================ images
(dict "root" $ "image" .Values.web.image): component keys override image.* */}}
{{- define "celery-stack.image" -}}
{{- $g := .root.Values.image -}}
{{- $i := .image -}}
{{- $registry := default $g.registry $i.registry -}}
{{- $tag := default (default .root.Chart.AppVersion $g.tag) $i.tag -}}
{{- /* No global digest: each component is its own build (validate.yaml refuses image.digest). */ -}}
{{- $digest := $i.digest -}}
{{- $ref := printf "%s:%s" $i.repository $tag -}}
{{- if $registry }}{{ $ref = printf "%s/%s" $registry $ref }}{{ end -}}
{{- if $digest }}{{ $ref = printf "%s@%s" $ref $digest }}{{ end -}}
{{- $ref -}}
{{- end -}}

{{- define "celery-stack.pullPolicy" -}}
{{- default .root.Values.image.pullPolicy .image.pullPolicy -}}
{{- end -}}

{{/* ================================================================ pools
Deep merge of workers.poolDefaults with one pool entry. Written by hand because
sprig's merge/mergeOverwrite drop explicit false/0 (e.g. minReplicas: 0).
Returns JSON: use `include ... | fromJson`. */}}
{{- define "celery-stack.deepMerge" -}}
{{- $out := deepCopy .base -}}
{{- range $key, $value := .override -}}
{{- $current := get $out $key -}}
{{- if and (kindIs "map" $value) (kindIs "map" $current) -}}
{{- $_ := set $out $key (include "celery-stack.deepMerge" (dict "base" $current "override" $value) | fromJson) -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* (dict "root" $ "name" "default") -> merged pool (JSON) with derived fields:
     name, fullname, target (backlog per replica). */}}
{{- define "celery-stack.pool" -}}
{{- $pool := include "celery-stack.deepMerge" (dict "base" .root.Values.workers.poolDefaults "override" (get .root.Values.workers.pools .name)) | fromJson -}}
{{- $_ := set $pool "name" .name -}}
{{- $_ := set $pool "fullname" (printf "%s-worker-%s" (include "celery-stack.fullname" .root) .name) -}}
{{- $target := int $pool.autoscaling.targetPerReplica -}}
{{- $_ := set $pool "target" (ternary (int $pool.concurrency) $target (eq $target 0)) -}}
{{- /* Unset grace period: the hard limit + 30 s, as tools/gen_pools.py does for Compose. */ -}}
{{- if not $pool.terminationGracePeriodSeconds -}}
{{- $_ := set $pool "terminationGracePeriodSeconds" (add (int $pool.timeLimit) 30) -}}
{{- end -}}
{{- toJson $pool -}}
{{- end -}}

{{/* KEDA redis trigger connection for a pool: explicit values, else the in-chart Redis.
     (dict "root" $ "pool" $pool) -> JSON {address, passwordSecret: {name, key}} */}}
{{- define "celery-stack.kedaRedis" -}}
{{- $r := .pool.autoscaling.keda.redis -}}
{{- $fullname := include "celery-stack.fullname" .root -}}
{{- $inChart := .root.Values.redis.enabled -}}
{{- $address := $r.address | default (ternary (printf "%s-redis:6379" $fullname) "" $inChart) -}}
{{- $secret := $r.passwordSecret -}}
{{- if and (not $secret.name) $inChart -}}
{{- $secret = dict "name" (include "celery-stack.secretName" .root) "key" "REDIS_PASSWORD" -}}
{{- end -}}
{{- toJson (dict "address" $address "passwordSecret" $secret) -}}
{{- end -}}

{{/* A memory quantity in KiB, rounded down: every form values.schema.json accepts
     ("768Mi", "1.5Gi", "2G", "1073741824"); 0 for anything else. */}}
{{- define "celery-stack.memoryKiB" -}}
{{- $q := toString . -}}
{{- $bytes := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "Pi" 1125899906842624 "Ei" 1152921504606846976 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "P" 1000000000000000 "E" 1000000000000000000 -}}
{{- $unit := regexFind "(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)$" $q -}}
{{- $number := trimSuffix $unit $q -}}
{{- if regexMatch "^[0-9]+([.][0-9]+)?$" $number -}}
{{- floor (divf (mulf (float64 $number) (get $bytes $unit)) 1024) | int64 -}}
{{- else -}}
0
{{- end -}}
{{- end -}}

{{/* Sorted names of enabled pools. Returns JSON list. */}}
{{- define "celery-stack.enabledPools" -}}
{{- $names := list -}}
{{- range $name := keys .Values.workers.pools | sortAlpha -}}
{{- $pool := include "celery-stack.pool" (dict "root" $ "name" $name) | fromJson -}}
{{- if $pool.enabled }}{{ $names = append $names $name }}{{ end -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* METRICS_POOLS for celery-stack-metrics: {"<pool>": {"queues": [...], "concurrency": n}}.
     Generated from the pools map so the exporter and the Deployments never disagree. */}}
{{- define "celery-stack.metricsPools" -}}
{{- $out := dict -}}
{{- range $name := include "celery-stack.enabledPools" . | fromJsonArray -}}
{{- $pool := include "celery-stack.pool" (dict "root" $ "name" $name) | fromJson -}}
{{- $_ := set $out $name (dict "queues" $pool.queues "concurrency" (int $pool.concurrency)) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Every queue of the enabled pools, comma-separated (CE_QUEUES). */}}
{{- define "celery-stack.allQueues" -}}
{{- $queues := list -}}
{{- range $name := include "celery-stack.enabledPools" . | fromJsonArray -}}
{{- $pool := include "celery-stack.pool" (dict "root" $ "name" $name) | fromJson -}}
{{- $queues = concat $queues $pool.queues -}}
{{- end -}}
{{- $queues | uniq | join "," -}}
{{- end -}}

{{/* CELERY_TASK_ROUTES: JSON {"<task>": "<first queue of the pool that routes it>"}. */}}
{{- define "celery-stack.routes" -}}
{{- $out := dict -}}
{{- range $name := include "celery-stack.enabledPools" . | fromJsonArray -}}
{{- $pool := include "celery-stack.pool" (dict "root" $ "name" $name) | fromJson -}}
{{- range $task := $pool.routes -}}
{{- $_ := set $out $task (first $pool.queues) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Where a task goes: (dict "root" $ "task" "jobs.tasks.add") -> JSON {pool, queue}: the
     first queue of the enabled pool that routes it (a name or Celery glob), else `default`
     and the pool consuming it, as config/pools.py routes it. */}}
{{- define "celery-stack.taskPool" -}}
{{- $out := dict -}}
{{- range $name := include "celery-stack.enabledPools" .root | fromJsonArray -}}
{{- $pool := include "celery-stack.pool" (dict "root" $.root "name" $name) | fromJson -}}
{{- range $route := $pool.routes -}}
{{- $regex := printf "^%s$" (regexQuoteMeta $route | replace "\\*" ".*" | replace "\\?" ".") -}}
{{- if and (not $out) (regexMatch $regex $.task) }}{{ $out = dict "pool" $name "queue" (first $pool.queues) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if not $out -}}
{{- range $name := include "celery-stack.enabledPools" .root | fromJsonArray -}}
{{- $pool := include "celery-stack.pool" (dict "root" $.root "name" $name) | fromJson -}}
{{- if has "default" $pool.queues }}{{ $out = dict "pool" $name "queue" "default" }}{{ end -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Per-queue alert thresholds of the enabled pools: the recording rules that
     tools/gen_pools.py writes to monitoring/prometheus/rules/celery-stack-pools.yml
     for pools.yaml (a test compares the two), plus the release's namespace, which the
     alerts match on: two releases on one Prometheus each get their own thresholds.
     Returns YAML of the rule group. */}}
{{- define "celery-stack.thresholdRules" -}}
{{- $records := list (list "queueDepth" "queue_name:celery_queue_depth:alert_threshold") (list "waitP95Seconds" "queue_name:celery_queue_wait_time_seconds:p95_alert_threshold") (list "oldestMessageSeconds" "queue_name:celery_queue_oldest_message_age_seconds:alert_threshold") -}}
{{- $rules := list -}}
{{- range $r := $records -}}
{{- range $name := include "celery-stack.enabledPools" $ | fromJsonArray -}}
{{- $pool := include "celery-stack.pool" (dict "root" $ "name" $name) | fromJson -}}
{{- range $queue := $pool.queues -}}
{{- $rules = append $rules (dict "record" (index $r 1) "expr" (printf "vector(%v)" (get $pool.alerts (index $r 0))) "labels" (dict "namespace" $.Release.Namespace "pool" $name "queue_name" $queue "tier" $pool.alerts.tier)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (list (dict "name" "celery-stack.pools.thresholds" "rules" $rules)) -}}
{{- end -}}

{{/* ================================================================ config
Non-secret environment shared by web, workers, beat and the migrations Job. */}}
{{- define "celery-stack.configData" -}}
{{- $c := .Values.config -}}
DJANGO_DEBUG: {{ ternary "true" "false" $c.debug | quote }}
DJANGO_LOG_LEVEL: {{ $c.logLevel | quote }}
CELERY_LOG_LEVEL: {{ $c.celeryLogLevel | quote }}
DJANGO_ALLOWED_HOSTS: {{ include "celery-stack.allowedHosts" . | quote }}
DJANGO_CSRF_TRUSTED_ORIGINS: {{ join "," $c.csrfTrustedOrigins | quote }}
{{- /* Every process declares every enabled pool's queues and knows every route
       (config/pools.py): a pool added under workers.pools needs no new image. */}}
CELERY_TASK_QUEUES: {{ include "celery-stack.allQueues" . | quote }}
CELERY_TASK_ROUTES: {{ include "celery-stack.routes" . | quote }}
{{- with $c.brokerVisibilityTimeout }}
CELERY_BROKER_VISIBILITY_TIMEOUT: {{ . | int | quote }}
{{- end }}
API_MAX_COUNTDOWN: {{ $c.apiMaxCountdown | int | quote }}
API_LONG_JOB_MAX_SECONDS: {{ $c.apiLongJobMaxSeconds | int | quote }}
{{- $rl := $c.rateLimits }}
RATELIMIT_ENABLE: {{ ternary "true" "false" $rl.enabled | quote }}
RATELIMIT_ENQUEUE: {{ $rl.enqueue | quote }}
RATELIMIT_ENQUEUE_PER_IP: {{ $rl.enqueuePerIp | quote }}
RATELIMIT_SIGNUP_PER_IP: {{ $rl.signupPerIp | quote }}
RATELIMIT_RESET_PER_IP: {{ $rl.passwordResetPerIp | quote }}
RATELIMIT_MAIL_PER_ADDRESS: {{ $rl.mailPerAddress | quote }}
RATELIMIT_LOGIN_PER_IP: {{ $rl.loginPerIp | quote }}
RATELIMIT_TRUSTED_PROXIES: {{ $rl.trustedProxies | int | quote }}
{{- if include "celery-stack.sqs" . }}
{{- /* config/sqs.py: the pools' queues become predefined queues under this account. */}}
SQS_REGION: {{ .Values.broker.sqs.region | quote }}
SQS_QUEUE_PREFIX: {{ .Values.broker.sqs.queuePrefix | quote }}
SQS_ACCOUNT_ID: {{ .Values.broker.sqs.accountId | quote }}
{{- end }}
CELERY_HEARTBEAT_FILE: "/tmp/celery-heartbeat"
CELERY_HEARTBEAT_MAX_AGE: {{ $c.heartbeatMaxAge | int | quote }}
{{- range $k, $v := $c.extraEnv }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* Hosts Django must accept: Service DNS names (helm test, in-cluster clients),
     localhost, Ingress hosts, user extras. The web pod prepends its own IP
     (kubelet probes and Prometheus scrapes use it as Host). */}}
{{- define "celery-stack.allowedHosts" -}}
{{- $svc := printf "%s-web" (include "celery-stack.fullname" .) -}}
{{- $hosts := list "localhost" "127.0.0.1" $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) -}}
{{- range .Values.web.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end -}}
{{- join "," (concat $hosts .Values.config.allowedHosts | uniq) -}}
{{- end -}}

{{/* Where a Secret-backed variable comes from: (dict "root" $ "key" "DATABASE_URL" ["secret" <name>])
     -> JSON {name, key}. A connection URL set with secrets.<url>From (e.g. a CloudNativePG
     Secret's `uri`) comes from that Secret's key, everything else from the chart's Secret. */}}
{{- define "celery-stack.secretRef" -}}
{{- $s := .root.Values.secrets -}}
{{- $from := get (dict "DATABASE_URL" $s.databaseUrlFrom "CELERY_BROKER_URL" $s.brokerUrlFrom "RATELIMIT_REDIS_URL" $s.rateLimitRedisUrlFrom) .key | default dict -}}
{{- if $from.secretName -}}
{{- toJson (dict "name" $from.secretName "key" $from.key) -}}
{{- else -}}
{{- toJson (dict "name" (.secret | default (include "celery-stack.secretName" .root)) "key" .key) -}}
{{- end -}}
{{- end -}}

{{/* Secret-backed env. (dict "root" $ "keys" (list "DJANGO_SECRET_KEY" ...) ["secret" <name>]) */}}
{{- define "celery-stack.secretEnv" -}}
{{- range .keys }}
{{- if and (eq . "CELERY_BROKER_URL") (include "celery-stack.sqs" $.root) }}
{{- /* SQS: no credentials in the URL (the AWS SDK's chain: IRSA / EKS Pod Identity), so
       nothing secret; with an existingSecret too. */}}
- name: CELERY_BROKER_URL
  value: "sqs://"
{{- else }}
{{- $ref := include "celery-stack.secretRef" (dict "root" $.root "key" . "secret" $.secret) | fromJson }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "celery-stack.appSecretKeys" -}}
{{- list "DJANGO_SECRET_KEY" "DATABASE_URL" "CELERY_BROKER_URL" | toJson -}}
{{- end -}}

{{- define "celery-stack.appSecretEnv" -}}
{{ include "celery-stack.secretEnv" (dict "root" . "keys" (include "celery-stack.appSecretKeys" . | fromJsonArray)) }}
{{- end -}}

{{/* Roll pods when the config or the chart-made Secret's content changes (the content
     actually rendered, generated keys included). An existingSecret is not read: roll the
     pods yourself or use a reloader. */}}
{{- define "celery-stack.checksums" -}}
checksum/config: {{ include "celery-stack.configData" . | sha256sum }}
checksum/secret: {{ if .Values.secrets.existingSecret }}{{ .Values.secrets.existingSecret | sha256sum }}{{ else }}{{ include "celery-stack.secretData" . | sha256sum }}{{ end }}
{{- end -}}

{{/* "true" when the migrations Job is a pre-install/pre-upgrade hook. With the in-chart
     Postgres it never is: see templates/migrations-job.yaml. */}}
{{- define "celery-stack.migrationsAsHook" -}}
{{- $m := .Values.migrations -}}
{{- if and $m.enabled $m.useHelmHooks (not .Values.postgresql.enabled) }}true{{ end -}}
{{- end -}}

{{/* The chart-made Secret's data (JSON of plain values). Explicit values win, then what the
     cluster's Secret already holds (helm upgrade), then new random values, but only when
     Helm can read the cluster: under `helm template` (Argo CD, Flux) lookup returns nothing,
     a random key would change on every render, so the render fails instead. Computed once
     per render and cached in .Values, so the Secret, its hook copy and every checksum agree. */}}
{{- define "celery-stack.secretData" -}}
{{- if not (hasKey .Values "_secretDataCache") -}}
{{- $name := include "celery-stack.fullname" . -}}
{{- $s := .Values.secrets -}}
{{- /* Listing the namespace's Secrets answers (even empty) only on a live cluster; Helm
       itself keeps its releases there, so it is allowed to. */ -}}
{{- $live := not (empty (lookup "v1" "Secret" .Release.Namespace "")) -}}
{{- $keep := dict -}}
{{- range $k, $v := (lookup "v1" "Secret" .Release.Namespace $name).data | default dict }}{{ $_ := set $keep $k ($v | b64dec) }}{{ end -}}
{{- /* key, value path, explicit value, prefix and length of a generated value */ -}}
{{- $generated := list (list "DJANGO_SECRET_KEY" "secrets.djangoSecretKey" $s.djangoSecretKey "" 50) -}}
{{- if include "celery-stack.enabled" (dict "root" . "component" "flower") }}{{ $generated = append $generated (list "FLOWER_BASIC_AUTH" "secrets.flowerBasicAuth" $s.flowerBasicAuth "admin:" 24) }}{{ end -}}
{{- if .Values.redis.enabled }}{{ $generated = append $generated (list "REDIS_PASSWORD" "redis.password" .Values.redis.password "" 32) }}{{ end -}}
{{- if .Values.postgresql.enabled }}{{ $generated = append $generated (list "POSTGRES_PASSWORD" "postgresql.password" .Values.postgresql.password "" 32) }}{{ end -}}
{{- $data := dict -}}
{{- $missing := list -}}
{{- range $g := $generated -}}
{{- $value := index $g 2 | default (get $keep (index $g 0)) -}}
{{- if and (not $value) $live }}{{ $value = printf "%s%s" (index $g 3) (randAlphaNum (index $g 4)) }}{{ end -}}
{{- if $value }}{{ $_ := set $data (index $g 0) $value }}{{ else }}{{ $missing = append $missing (index $g 1) }}{{ end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "%s: empty, and this render cannot read the cluster (helm template, Argo CD, Flux), so a new random value would be rendered every time. Set them, or set secrets.existingSecret (see the chart README, 'Credentials'); helm install/upgrade generates them once and keeps them." (join ", " $missing)) -}}
{{- end -}}
{{- if include "celery-stack.sqs" . -}}
{{- /* No CELERY_BROKER_URL: pods get sqs:// as a plain value (celery-stack.secretEnv). */ -}}
{{- else if .Values.redis.enabled -}}
{{- $_ := set $data "CELERY_BROKER_URL" ($s.brokerUrl | default (printf "redis://:%s@%s-redis:6379/0" (urlquery $data.REDIS_PASSWORD) $name)) -}}
{{- else -}}
{{- $_ := set $data "CELERY_BROKER_URL" $s.brokerUrl -}}
{{- end -}}
{{- with $s.rateLimitRedisUrl }}{{ $_ := set $data "RATELIMIT_REDIS_URL" . }}{{ end -}}
{{- if .Values.postgresql.enabled -}}
{{- $pg := .Values.postgresql -}}
{{- $_ := set $data "DATABASE_URL" ($s.databaseUrl | default (printf "postgres://%s:%s@%s-postgresql:5432/%s" $pg.username (urlquery $data.POSTGRES_PASSWORD) $name $pg.database)) -}}
{{- else -}}
{{- $_ := set $data "DATABASE_URL" $s.databaseUrl -}}
{{- end -}}
{{- /* URLs taken from other Secrets (secrets.<url>From) are not copied here. */ -}}
{{- range $key, $from := dict "DATABASE_URL" $s.databaseUrlFrom "CELERY_BROKER_URL" $s.brokerUrlFrom "RATELIMIT_REDIS_URL" $s.rateLimitRedisUrlFrom -}}
{{- if $from.secretName }}{{ $_ := unset $data $key }}{{ end -}}
{{- end -}}
{{- $_ := set .Values "_secretDataCache" (toJson $data) -}}
{{- end -}}
{{- .Values._secretDataCache -}}
{{- end -}}

{{/* ================================================================ pod parts */}}

{{/* (dict "root" $ "component" "web" "values" .Values.web ["pool" name]) */}}
{{- define "celery-stack.scheduling" -}}
{{- $r := .root.Values -}}
{{- with (default $r.nodeSelector .values.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $r.tolerations .values.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $r.affinity .values.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $r.priorityClassName .values.priorityClassName) }}
priorityClassName: {{ . }}
{{- end }}
{{- /* A pool's own topologySpreadConstraints replace the generated ones; a constraint
       without labelSelector spreads the pool's own pods. */}}
{{- if .values.topologySpreadConstraints }}
topologySpreadConstraints:
{{- range .values.topologySpreadConstraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "celery-stack.selectorLabels" $ | fromYaml)) }}
{{- end }}
  - {{- toYaml $c | nindent 4 }}
{{- end }}
{{- else if $r.topologySpread.enabled }}
topologySpreadConstraints:
{{- range $r.topologySpread.topologyKeys }}
  - maxSkew: {{ $r.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $r.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "celery-stack.selectorLabels" $ | nindent 8 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod-level fields common to every chart pod. Called with the root context, or
     (dict "root" $ "serviceAccountName" <name>) for a pool with its own ServiceAccount. */}}
{{- define "celery-stack.podCommon" -}}
{{- $root := .root | default . -}}
serviceAccountName: {{ .serviceAccountName | default (include "celery-stack.serviceAccountName" $root) }}
{{- with $root }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The pod template of every Deployment (web, beat, flower, the exporter, each worker pool):
     labels, annotations, ServiceAccount and security context, scheduling, grace period,
     init containers, then the component's own containers, its sidecars and its volumes.
     (dict "root" $ "component" <name> "values" <component or pool> ["pool" <name>]
           "containers" <YAML list: the component's own containers>
           ["wait" true: wait-for-migrations first] ["serviceAccountName" <name>]
           ["extraAnnotations" <map>]) */}}
{{- define "celery-stack.podTemplate" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $ctx := pick . "root" "component" "values" "pool" -}}
{{- $image := dict "root" $root "image" $v.image -}}
metadata:
  labels:
    {{- include "celery-stack.podLabels" $ctx | nindent 4 }}
    {{- /* A pool's podLabels over the global ones, key by key. */}}
    {{- with merge (deepCopy ($v.podLabels | default dict)) (deepCopy $root.Values.podLabels) }}{{ toYaml . | nindent 4 }}{{ end }}
  annotations:
    {{- include "celery-stack.podAnnotations" (merge (dict "extra" .extraAnnotations) $ctx) | nindent 4 }}
spec:
  {{- include "celery-stack.podCommon" (dict "root" $root "serviceAccountName" .serviceAccountName) | nindent 2 }}
  {{- include "celery-stack.scheduling" $ctx | trim | nindent 2 }}
  {{- if not (kindIs "invalid" $v.terminationGracePeriodSeconds) }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  {{- end }}
  {{- include "celery-stack.initContainers" (dict "root" $root "values" $v "wait" .wait "image" (include "celery-stack.image" $image) "pullPolicy" (include "celery-stack.pullPolicy" $image) "resources" $v.resources) | nindent 2 }}
  containers:
    {{- .containers | nindent 4 }}
    {{- with $v.sidecars }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumes:
    {{- include "celery-stack.volumes" $ctx | nindent 4 }}
{{- end -}}

{{/* A pool's ServiceAccount: its own (serviceAccount.create: the chart makes
     <fullname>-worker-<pool> unless named; or an existing serviceAccount.name), else the
     chart's. (dict "root" $ "pool" $pool) */}}
{{- define "celery-stack.poolServiceAccountName" -}}
{{- $sa := .pool.serviceAccount | default dict -}}
{{- if $sa.create -}}
{{- $sa.name | default .pool.fullname -}}
{{- else -}}
{{- $sa.name | default (include "celery-stack.serviceAccountName" .root) -}}
{{- end -}}
{{- end -}}

{{- define "celery-stack.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* /tmp is the only writable path: heartbeat file, prometheus multiproc dir, python temp files.
     Called with the root context (256Mi on the node's disk) or (dict "tmp" <pool's tmp>). */}}
{{- define "celery-stack.tmpVolume" -}}
{{- $tmp := .tmp | default dict -}}
- name: tmp
  emptyDir:
    {{- with $tmp.medium }}
    medium: {{ . }}
    {{- end }}
    sizeLimit: {{ $tmp.sizeLimit | default "256Mi" }}
{{- end -}}
{{- define "celery-stack.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* A component's volumes and its containers' mounts: the chart's /tmp plus the
     component's extraVolumes / extraVolumeMounts. (dict "values" <component or pool>) */}}
{{- define "celery-stack.volumes" -}}
{{ include "celery-stack.tmpVolume" (dict "tmp" .values.tmp) }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
{{- define "celery-stack.volumeMounts" -}}
{{ include "celery-stack.tmpMount" . }}
{{- with .values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Heartbeat-file probe handler (no broker round-trip, no Django import). */}}
{{- define "celery-stack.heartbeatProbe" -}}
exec:
  command: ["bin/heartbeat-check"]
{{- end -}}

{{/* Pod annotations, one map so no key appears twice: the global podAnnotations, overridden
     key by key by the component's, then the chart's own (checksums, `extra`).
     (dict "root" $ "values" .Values.web ["extra" dict] ["noChecksums" true]); a Job's pod
     template is immutable, so Jobs take no checksums. */}}
{{- define "celery-stack.podAnnotations" -}}
{{- $out := merge (deepCopy (.values.podAnnotations | default dict)) (deepCopy .root.Values.podAnnotations) -}}
{{- if not .noChecksums }}{{ $out = merge (include "celery-stack.checksums" .root | fromYaml) $out }}{{ end -}}
{{- with .extra }}{{ $out = merge (deepCopy .) $out }}{{ end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The migrations Job's ServiceAccount. As a pre-install hook it runs before the chart's
     ServiceAccount exists, so it gets a hook copy (templates/serviceaccount.yaml). */}}
{{- define "celery-stack.migrationsServiceAccountName" -}}
{{- if and .Values.serviceAccount.create (include "celery-stack.migrationsAsHook" .) -}}
{{- include "celery-stack.fullname" . }}-migrate
{{- else -}}
{{- include "celery-stack.serviceAccountName" . -}}
{{- end -}}
{{- end -}}

{{/* A pod's init containers: wait-for-migrations (web, workers and beat: "wait" true), then
     the component's own `initContainers`. wait-for-migrations holds the pod until the schema
     is current (`manage.py migrate --check` exits 0). Orders start-up with any migration mode:
     Helm hook, GitOps Job, or a Job racing the in-chart Postgres. It gets the component's
     extraVolumeMounts (e.g. a database CA bundle).
     (dict "root" $ "values" <component or pool> ["wait" true "image" <ref> "pullPolicy" <policy> "resources" <map>]) */}}
{{- define "celery-stack.initContainers" -}}
{{- $root := .root -}}
{{- $wait := and .wait $root.Values.migrations.enabled $root.Values.migrations.waitForMigrations -}}
{{- if or $wait .values.initContainers -}}
initContainers:
{{- if $wait }}
  - name: wait-for-migrations
    image: {{ .image }}
    imagePullPolicy: {{ .pullPolicy }}
    args:
      - sh
      - -c
      - until python manage.py migrate --check >/dev/null; do echo "waiting for database migrations"; sleep 5; done
    envFrom:
      - configMapRef:
          name: {{ include "celery-stack.fullname" $root }}
    env:
      {{- include "celery-stack.appSecretEnv" $root | trim | nindent 6 }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- include "celery-stack.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      {{- include "celery-stack.volumeMounts" . | nindent 6 }}
{{- end }}
{{- with .values.initContainers }}
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* The web's TLS and admin env: with Ingress TLS, the proxy header, secure cookies,
     SSL redirect, HSTS and https://<TLS host> as trusted CSRF origins. */}}
{{- define "celery-stack.webSecurityEnv" -}}
{{- $web := .Values.web -}}
{{- $tlsHosts := list -}}
{{- if $web.ingress.enabled }}{{ range $web.ingress.tls }}{{ range .hosts }}{{ $tlsHosts = append $tlsHosts . }}{{ end }}{{ end }}{{ end -}}
- name: DJANGO_ADMIN_PATH
  value: {{ $web.adminPath | quote }}
- name: METRICS_PORT
  value: {{ $web.metricsPort | quote }}
{{- if $tlsHosts }}
{{- $origins := .Values.config.csrfTrustedOrigins }}
{{- range $tlsHosts }}{{ $origins = append $origins (printf "https://%s" .) }}{{ end }}
- name: DJANGO_SECURE_PROXY_SSL
  value: "true"
- name: DJANGO_CSRF_TRUSTED_ORIGINS
  value: {{ join "," ($origins | uniq) | quote }}
- name: DJANGO_SECURE_HSTS_SECONDS
  value: {{ $web.hsts.seconds | int | quote }}
- name: DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS
  value: {{ ternary "true" "false" $web.hsts.includeSubdomains | quote }}
- name: DJANGO_SECURE_HSTS_PRELOAD
  value: {{ ternary "true" "false" $web.hsts.preload | quote }}
{{- end }}
{{- if or .Values.secrets.rateLimitRedisUrlFrom.secretName (and (not .Values.secrets.existingSecret) .Values.secrets.rateLimitRedisUrl) }}
{{ include "celery-stack.secretEnv" (dict "root" . "keys" (list "RATELIMIT_REDIS_URL")) | trim }}
{{- end }}
{{- end -}}
