{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "kaizen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: "<release>-<chart>", or the release name when it already contains the chart
name. Truncated to 63 characters.
*/}}
{{- define "kaizen.fullname" -}}
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

{{/*
Chart label value: "<name>-<version>".
*/}}
{{- define "kaizen.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the operator pods. Never change these between releases: Deployment selectors are
immutable.
*/}}
{{- define "kaizen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kaizen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common labels on every object the chart renders.
*/}}
{{- define "kaizen.labels" -}}
helm.sh/chart: {{ include "kaizen.chart" . }}
{{ include "kaizen.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kaizen
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "kaizen.serviceAccountName" -}}
{{- default (include "kaizen.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/*
Operator image reference; the tag defaults to the chart's appVersion.
*/}}
{{- define "kaizen.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- if .Values.image.digest }}{{ $ref = printf "%s@%s" $ref .Values.image.digest }}{{ end }}
{{- $ref }}
{{- end }}

{{/*
Name of the ConfigMap holding the policy file.
*/}}
{{- define "kaizen.configMapName" -}}
{{- printf "%s-config" (include "kaizen.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
