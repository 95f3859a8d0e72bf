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

{{/* The gateway's pods, and only they: the Deployment's selector, the Service's, the PodDisruptionBudget's and the
NetworkPolicy's. */}}
{{- define "o365-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "o365-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of the release's other pods (the `helm test` pod: dict "root" . "component" "test"): their own name, so
that no selector of the gateway's pods takes them (a bare pod with those labels would be adopted by the ReplicaSet,
counted by the PodDisruptionBudget and sent the Service's traffic). */}}
{{- define "o365-gateway.componentLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ printf "%s-%s" (include "o365-gateway.name" .root) .component | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: {{ include "o365-gateway.name" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
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

{{/* What every gateway container needs to reach the database: with database.caSecret, the CA that verifies its
certificate, mounted by databaseCAMount from the volume databaseCAVolume. */}}
{{- define "o365-gateway.databaseEnv" -}}
{{ include "o365-gateway.secretEnv" (dict "root" . "name" "O365GW_DATABASE_URL" "key" "database-url") }}
{{- if .Values.database.caSecret }}
- name: O365GW_DATABASE_CA_FILE
  value: /etc/o365-gateway/database-ca/ca.crt
{{- end }}
- name: O365GW_DATABASE_TIMEOUT_SECONDS
  value: {{ .Values.gateway.databaseTimeoutSeconds | quote }}
- name: O365GW_LOG_LEVEL
  value: {{ .Values.gateway.logLevel | quote }}
{{- end }}

{{- define "o365-gateway.databaseCAMount" -}}
{{- if .Values.database.caSecret -}}
- name: database-ca
  mountPath: /etc/o365-gateway/database-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "o365-gateway.databaseCAVolume" -}}
{{- if .Values.database.caSecret -}}
- name: database-ca
  secret:
    secretName: {{ .Values.database.caSecret }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}

{{/* What makes the pods roll when the gateway's Secret changes: the chart's Secret as rendered, or the name of the
operator's with the revision the operator gives (its content cannot be read at template time). */}}
{{- define "o365-gateway.secretChecksum" -}}
{{- if .Values.secrets.existingSecret }}
{{- printf "%s@%s" .Values.secrets.existingSecret (toString .Values.secrets.existingSecretRevision) | sha256sum }}
{{- else }}
{{- include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end }}

{{/* Values that the schema cannot refuse alone: the database's CA with the chart's URL, the way to UTMStack and the
NetworkPolicy's destinations. */}}
{{- define "o365-gateway.validate" -}}
{{- $u := .Values.utmstack }}
{{- $url := .Values.secrets.databaseURL }}
{{- if and .Values.database.caSecret (not .Values.secrets.existingSecret) $url }}
{{- if not (regexMatch "[?&]sslmode=verify-(full|ca)(&|$)" $url) }}
{{- fail "database.caSecret needs sslmode=verify-full (or verify-ca) in secrets.databaseURL: the gateway refuses a CA it would not check the certificate with" }}
{{- end }}
{{- if regexMatch "[?&]sslrootcert=" $url }}
{{- fail "database.caSecret and sslrootcert in secrets.databaseURL both give the database's CA: keep database.caSecret and drop sslrootcert" }}
{{- end }}
{{- end }}
{{- if eq $u.mode "network" }}
{{- if not $u.network.address }}
{{- fail "utmstack.mode network needs utmstack.network.address (host:port of UTMStack's network service)" }}
{{- end }}
{{- if and (not $u.network.caSecret) (not $u.network.systemTrustStore) }}
{{- fail "utmstack.mode network needs utmstack.network.caSecret (a Secret with the ca.crt that signed UTMStack's certificate), or utmstack.network.systemTrustStore=true for a certificate from a public CA" }}
{{- end }}
{{- if and $u.network.caSecret $u.network.systemTrustStore }}
{{- fail "utmstack.network.caSecret and utmstack.network.systemTrustStore exclude each other: name the CA, or trust the system store" }}
{{- end }}
{{- else if eq $u.mode "socket" }}
{{- if not $u.socket.existingClaim }}
{{- if not $u.socket.allowHostPath }}
{{- fail "utmstack.mode socket mounts the engine's socket folder from the node (hostPath), which the Pod Security baseline and restricted profiles refuse: set utmstack.socket.allowHostPath=true once the namespace enforces the privileged level and nodeSelector names the UTMStack host (or use utmstack.socket.existingClaim, or the network path)" }}
{{- end }}
{{- if not $u.socket.hostPath }}
{{- fail "utmstack.mode socket needs utmstack.socket.hostPath or utmstack.socket.existingClaim" }}
{{- end }}
{{- if and (not .Values.nodeSelector) (not (dig "nodeAffinity" nil .Values.affinity)) }}
{{- fail "utmstack.mode socket with a hostPath needs the pods on the UTMStack host: set nodeSelector (or affinity.nodeAffinity)" }}
{{- end }}
{{- end }}
{{- else }}
{{- fail "utmstack.mode must be network or socket" }}
{{- end }}
{{- if .Values.networkPolicy.enabled }}
{{- $covered := false }}
{{- $port := 0 }}
{{- if eq $u.mode "network" }}
{{- $port = splitList ":" $u.network.address | last | int }}
{{- end }}
{{- range $i, $d := .Values.networkPolicy.utmstack }}
{{- $selects := or (hasKey $d "namespaceSelector") (hasKey $d "podSelector") }}
{{- if or (and $d.cidr $selects) (and (not $d.cidr) (not $selects)) }}
{{- fail (printf "networkPolicy.utmstack[%d]: give a cidr, or a namespaceSelector and/or a podSelector (not both kinds)" $i) }}
{{- end }}
{{- range $d.ports }}
{{- if eq (int .) $port }}
{{- $covered = true }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.networkPolicy.utmstack $port (not $covered) }}
{{- fail (printf "networkPolicy.utmstack does not allow the default destination's port %d (utmstack.network.address): list it too" $port) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod security context, with the container's, shared by the gateway and its migrations. */}}
{{- define "o365-gateway.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}
