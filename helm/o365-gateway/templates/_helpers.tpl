{{/* Chart name, truncated to the 63 characters Kubernetes allows in a name. */}}
{{- define "o365-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name. */}}
{{- define "o365-gateway.fullname" -}}
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

{{- define "o365-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "o365-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "o365-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "o365-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The Secret holding database URL, keys, token: the operator's, or the chart's. */}}
{{- define "o365-gateway.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "o365-gateway.fullname" . }}
{{- end }}
{{- end }}

{{- define "o365-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* An environment variable from a key of the gateway's Secret. */}}
{{- define "o365-gateway.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "o365-gateway.secretName" .root }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/* What every gateway container needs to reach the database. */}}
{{- define "o365-gateway.databaseEnv" -}}
{{ include "o365-gateway.secretEnv" (dict "root" . "name" "O365GW_DATABASE_URL" "key" "database-url") }}
- name: O365GW_DATABASE_TIMEOUT_SECONDS
  value: {{ .Values.gateway.databaseTimeoutSeconds | quote }}
- name: O365GW_LOG_LEVEL
  value: {{ .Values.gateway.logLevel | quote }}
{{- end }}

{{/* The pod security context, with the container's, shared by the gateway and the migration Job. */}}
{{- define "o365-gateway.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}
