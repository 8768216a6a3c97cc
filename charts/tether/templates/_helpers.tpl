{{/* Chart name, overridable. */}}
{{- define "tether.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: the release name when it already contains the chart name
(`helm install tether ...` gives `tether`), else <release>-<chart>.
*/}}
{{- define "tether.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tether.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "tether.labels" -}}
helm.sh/chart: {{ include "tether.chart" . }}
{{ include "tether.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels the Service, PDB and spread rules select pods by; immutable once installed. */}}
{{- define "tether.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tether.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the `helm test` pod (the NetworkPolicy admits it by these). */}}
{{- define "tether.testLabels" -}}
app.kubernetes.io/name: {{ include "tether.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end }}

{{/*
Image reference: repository:tag, repository@digest when image.digest is set, or
repository:tag@digest when both are.
*/}}
{{- define "tether.image" -}}
{{- if and .Values.image.digest .Values.image.tag }}
{{- printf "%s:%s@%s" .Values.image.repository .Values.image.tag .Values.image.digest }}
{{- else if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The helm test pod's image, pinned the same way. */}}
{{- define "tether.testImage" -}}
{{- $i := .Values.tests.image }}
{{- if $i.digest }}
{{- printf "%s:%s@%s" $i.repository $i.tag $i.digest }}
{{- else }}
{{- printf "%s:%s" $i.repository $i.tag }}
{{- end }}
{{- end }}

{{/*
shutdownDelay in whole seconds, rounded up ("500ms" -> 1, "5s" -> 5, "1m" -> 60).
The schema allows only these three units; more than 60s is refused here.
*/}}
{{- define "tether.shutdownDelaySeconds" -}}
{{- $d := toString .Values.shutdownDelay }}
{{- $ms := 0 }}
{{- if hasSuffix "ms" $d }}
{{- $ms = trimSuffix "ms" $d | int64 }}
{{- else if hasSuffix "s" $d }}
{{- $ms = mul (trimSuffix "s" $d | int64) 1000 }}
{{- else if hasSuffix "m" $d }}
{{- $ms = mul (trimSuffix "m" $d | int64) 60000 }}
{{- else }}
{{- fail (printf "shutdownDelay %q: write whole milliseconds, seconds or minutes, e.g. 5s" $d) }}
{{- end }}
{{- if gt $ms 60000 }}
{{- fail (printf "shutdownDelay %s is more than 60s: the API server would keep calling a pod that is shutting down for that long, and the pod's grace period grows with it; use at most 60s (5s suffices on most clusters)" $d) }}
{{- end }}
{{- div (add $ms 999) 1000 }}
{{- end }}

{{/*
Refuses a PodDisruptionBudget that allows no voluntary eviction: with
minAvailable >= replicas (e.g. replicas 1, minAvailable 1) every node drain
blocks on tether's pod.
*/}}
{{- define "tether.checkPDB" -}}
{{- if .Values.podDisruptionBudget.enabled }}
{{- $replicas := int64 .Values.replicas }}
{{- $min := .Values.podDisruptionBudget.minAvailable }}
{{- $need := 0 }}
{{- if kindIs "string" $min }}
{{- /* Kubernetes rounds a percentage of minAvailable up. */}}
{{- $pct := trimSuffix "%" $min | int64 }}
{{- $need = div (add (mul $pct $replicas) 99) 100 }}
{{- else }}
{{- $need = int64 $min }}
{{- end }}
{{- if ge (int64 $need) $replicas }}
{{- fail (printf "podDisruptionBudget.minAvailable %v with replicas %d allows no pod to be evicted, so every node drain would block on tether: set replicas to at least %d, lower podDisruptionBudget.minAvailable, or set podDisruptionBudget.enabled=false" $min $replicas (add $need 1)) }}
{{- end }}
{{- end }}
{{- end }}


{{/* Secret holding tls.crt / tls.key, mounted at /tls. */}}
{{- define "tether.tlsSecretName" -}}
{{- if .Values.certManager.enabled }}
{{- printf "%s-tls" (include "tether.fullname" .) }}
{{- else }}
{{- required "tls.existingSecret is required when certManager.enabled=false (see certs/README.md)" .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{/* Name of the cert-manager Certificate for the serving certificate. */}}
{{- define "tether.servingCertName" -}}
{{- printf "%s-serving" (include "tether.fullname" .) }}
{{- end }}

{{/* Controllers that run, as a list ("none" gives an empty list). */}}
{{- define "tether.controllers" -}}
{{- $out := list }}
{{- range (splitList "," .Values.controllers) }}
{{- $c := trim . }}
{{- if and $c (ne $c "none") }}{{ $out = append $out $c }}{{ end }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/*
What every webhook shares: the service it calls (and, without cert-manager, the
CA it trusts), its failure behaviour, and the namespaces it never sees.
*/}}
{{- define "tether.webhookCommon" -}}
admissionReviewVersions: ["v1"]
sideEffects: None
timeoutSeconds: {{ .ctx.Values.timeoutSeconds }}
failurePolicy: {{ .ctx.Values.failurePolicy }}
matchPolicy: Equivalent
clientConfig:
  service:
    name: {{ include "tether.fullname" .ctx }}
    namespace: {{ .ctx.Release.Namespace }}
    path: {{ .path }}
    port: 443
  {{- if not .ctx.Values.certManager.enabled }}
  caBundle: {{ required "tls.caBundle is required when certManager.enabled=false (see certs/README.md)" .ctx.Values.tls.caBundle }}
  {{- end }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- toYaml (concat (list "kube-system" .ctx.Release.Namespace) .ctx.Values.namespaceSelector.excludeNamespaces | uniq) | nindent 8 }}
{{- end }}

{{/*
Environment the chart sets on the tether container (a YAML list, comments kept).
extraEnv may not repeat one of these names.
*/}}
{{- define "tether.env" -}}
- name: TETHER_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.ports.admission) | quote }}
- name: TETHER_METRICS_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.ports.metrics) | quote }}
- name: TETHER_TLS_CERT
  value: /tls/tls.crt
- name: TETHER_TLS_KEY
  value: /tls/tls.key
- name: TETHER_ADMISSION_KEYS
  value: /admission-keys
{{- if .Values.clientCA.existingSecret }}
- name: TETHER_CLIENT_CA
  value: /client-ca/{{ .Values.clientCA.key }}
{{- end }}
{{- with .Values.bannedKinds }}
- name: BANNED_KINDS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.allowedKinds }}
- name: ALLOWED_KINDS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.domainRoot }}
- name: EXT_DOMAIN_ROOT
  value: {{ . | quote }}
{{- end }}
- name: RUNNER_KSERVICE
  value: {{ .Values.runnerKservice | quote }}
- name: KNATIVE_AUTO_CREATE_CDC
  value: {{ .Values.autoCreateDomainClaims | quote }}
{{- with .Values.reservedNames }}
- name: TETHER_RESERVED_NAMES
  value: {{ join "," . | quote }}
{{- end }}
# The controller skips exactly the namespaces the webhooks skip (SECURITY.md,
# "Reconcile-time policy"); tether adds its own namespace itself too.
- name: TETHER_SKIP_NAMESPACES
  value: {{ join "," (concat (list "kube-system" .Release.Namespace) .Values.namespaceSelector.excludeNamespaces | uniq) | quote }}
- name: TETHER_CONTROLLERS
  value: {{ $controllers := include "tether.controllers" . | fromJsonArray }}{{ if $controllers }}{{ join "," $controllers | quote }}{{ else }}"none"{{ end }}
- name: TETHER_LEADER_ELECT
  value: {{ .Values.leaderElect | quote }}
- name: TETHER_ACCESS_REVIEW_CACHE_TTL
  value: {{ .Values.accessReviewCacheTTL | quote }}
- name: TETHER_KUBE_API_QPS
  value: {{ .Values.kubeApi.qps | int64 | quote }}
- name: TETHER_KUBE_API_BURST
  value: {{ .Values.kubeApi.burst | int64 | quote }}
- name: TETHER_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
# Tether's own identity for its access reviews (may tether's own account create the copy?).
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: SERVICE_ACCOUNT_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.serviceAccountName
# This replica's identity in the controller Lease.
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
# Keep serving (unready) for a few seconds after SIGTERM, until the endpoints
# controller has taken this pod out of the Service.
- name: TETHER_SHUTDOWN_DELAY
  value: {{ .Values.shutdownDelay | quote }}
# Budgets against hostile clients (SECURITY.md "Budgets").
- name: TETHER_MAX_CONNECTIONS
  value: {{ .Values.budgets.maxConnections | quote }}
- name: TETHER_MAX_CONNECTIONS_PER_PEER
  value: {{ .Values.budgets.maxConnectionsPerPeer | quote }}
- name: TETHER_TLS_HANDSHAKE_TIMEOUT
  value: {{ .Values.budgets.tlsHandshakeTimeout | quote }}
- name: TETHER_READ_TIMEOUT
  value: {{ .Values.budgets.readTimeout | quote }}
- name: TETHER_IDLE_TIMEOUT
  value: {{ .Values.budgets.idleTimeout | quote }}
- name: TETHER_MAX_REQUESTS
  value: {{ .Values.budgets.maxRequests | quote }}
- name: TETHER_MAX_REQUESTS_PER_PEER
  value: {{ .Values.budgets.maxRequestsPerPeer | quote }}
- name: TETHER_MAX_INFLIGHT_BYTES
  value: {{ .Values.budgets.maxInflightBytes | int64 | quote }}
- name: TETHER_MAX_INFLIGHT_BYTES_PER_PEER
  value: {{ .Values.budgets.maxInflightBytesPerPeer | int64 | quote }}
- name: TETHER_MAX_JSON_VALUES
  value: {{ .Values.budgets.maxJsonValues | int64 | quote }}
- name: TETHER_METRICS_MAX_CONNECTIONS
  value: {{ .Values.budgets.metricsMaxConnections | quote }}
{{- end }}
