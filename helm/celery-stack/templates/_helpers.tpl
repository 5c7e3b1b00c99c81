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

{{- define "celery-stack.labels" -}}
{{ include "celery-stack.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: celery-stack
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "celery-stack.chart" .root }}
{{- end -}}

{{/* ================================================================ images
(dict "root" $ "image" .Values.web.image): component keys override image.* */}}
{{- define "celery-stack.image" -}}
{{- $g := .root.Values.image -}}
{{- $i := .image -}}
{{- $registry := default $g.registry $i.registry -}}
{{- $tag := default (default .root.Chart.AppVersion $g.tag) $i.tag -}}
{{- $digest := default $g.digest $i.digest -}}
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

{{/* A memory quantity in KiB ("1Gi", "768Mi", "512M", "1073741824"); 0 when the
     format is not one of these (the caller then skips its check). */}}
{{- define "celery-stack.memoryKiB" -}}
{{- $q := toString . -}}
{{- $units := dict "Ki" 1 "Mi" 1024 "Gi" 1048576 "Ti" 1073741824 "K" 1 "M" 977 "G" 976563 -}}
{{- $kib := 0 -}}
{{- if regexMatch "^[0-9]+$" $q -}}
{{- $kib = div (int64 $q) 1024 -}}
{{- else -}}
{{- $m := regexFindAll "^([0-9]+)(Ki|Mi|Gi|Ti|K|M|G)$" $q 1 -}}
{{- if $m -}}
{{- $unit := regexFind "(Ki|Mi|Gi|Ti|K|M|G)$" $q -}}
{{- $kib = mul (int64 (trimSuffix $unit $q)) (get $units $unit) -}}
{{- end -}}
{{- end -}}
{{- $kib -}}
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

{{/* ================================================================ config
Non-secret environment shared by web, workers, beat and the migrations Job. */}}
{{- define "celery-stack.configData" -}}
{{- $c := .Values.config -}}
DJANGO_DEBUG: {{ ternary "true" "false" $c.debug | quote }}
DJANGO_LOG_LEVEL: {{ $c.logLevel | quote }}
CELERY_LOG_LEVEL: {{ $c.celeryLogLevel | quote }}
DJANGO_ALLOWED_HOSTS: {{ include "celery-stack.allowedHosts" . | quote }}
DJANGO_CSRF_TRUSTED_ORIGINS: {{ join "," $c.csrfTrustedOrigins | quote }}
CELERY_BROKER_VISIBILITY_TIMEOUT: {{ $c.brokerVisibilityTimeout | int | quote }}
API_MAX_COUNTDOWN: {{ $c.apiMaxCountdown | int | quote }}
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

{{/* Secret-backed env. (dict "root" $ "keys" (list "DJANGO_SECRET_KEY" ...)) */}}
{{- define "celery-stack.secretEnv" -}}
{{- $secret := include "celery-stack.secretName" .root -}}
{{- range .keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- end -}}

{{- define "celery-stack.appSecretEnv" -}}
{{ include "celery-stack.secretEnv" (dict "root" . "keys" (list "DJANGO_SECRET_KEY" "DATABASE_URL" "CELERY_BROKER_URL")) }}
{{- end -}}

{{/* Roll pods when config or chart-managed secret values change. */}}
{{- define "celery-stack.checksums" -}}
checksum/config: {{ include "celery-stack.configData" . | sha256sum }}
checksum/secret: {{ list .Values.secrets .Values.redis.password .Values.postgresql.password | toJson | sha256sum }}
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
{{- with $r.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if $r.topologySpread.enabled }}
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

{{/* Pod-level fields common to every chart pod. */}}
{{- define "celery-stack.podCommon" -}}
serviceAccountName: {{ include "celery-stack.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
enableServiceLinks: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "celery-stack.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* /tmp is the only writable path: heartbeat file, prometheus multiproc dir, python temp files. */}}
{{- define "celery-stack.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}
{{- define "celery-stack.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Heartbeat-file probe handler (no broker round-trip, no Django import). */}}
{{- define "celery-stack.heartbeatProbe" -}}
exec:
  command: ["bin/heartbeat-check"]
{{- end -}}

{{/* Pod annotations: globals, component, checksums. (dict "root" $ "values" .Values.web) */}}
{{- define "celery-stack.podAnnotations" -}}
{{ include "celery-stack.checksums" .root }}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Init container that holds web, workers and beat until the schema is current
     (`manage.py migrate --check` exits 0). Orders start-up with any migration mode:
     Helm hook, GitOps Job, or a Job racing the in-chart Postgres.
     (dict "root" $ "image" <ref> "pullPolicy" <policy> "resources" <map>) */}}
{{- define "celery-stack.waitForMigrations" -}}
{{- $root := .root -}}
{{- if and $root.Values.migrations.enabled $root.Values.migrations.waitForMigrations -}}
initContainers:
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
      {{- include "celery-stack.tmpMount" $root | nindent 6 }}
{{- end -}}
{{- end -}}
