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

{{- define "tether.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
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
