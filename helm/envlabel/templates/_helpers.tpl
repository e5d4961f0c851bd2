{{/* The chart's name, truncated to the 63 characters a label value allows. */}}
{{- define "envlabel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the prefix of every object this chart creates. */}}
{{- define "envlabel.fullname" -}}
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

{{- define "envlabel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "envlabel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "envlabel.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "envlabel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "envlabel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "envlabel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the API token list. */}}
{{- define "envlabel.tokenSecretName" -}}
{{- default (printf "%s-api-tokens" (include "envlabel.fullname" .)) .Values.api.existingSecret }}
{{- end }}

{{- define "envlabel.tokenSecretKey" -}}
{{- if .Values.api.existingSecret }}{{ .Values.api.existingSecretKey }}{{ else }}api-tokens{{ end }}
{{- end }}

{{/* "true" when the store is PostgreSQL, its URL read from postgresql.existingSecret (the HA layout). */}}
{{- define "envlabel.postgres" -}}
{{- if .Values.postgresql.existingSecret }}true{{ end }}
{{- end }}

{{/* The Lease the replicas elect their scanning leader with. */}}
{{- define "envlabel.leaseName" -}}
{{- (.Values.config.leader_election | default dict).lease_name | default (printf "%s-leader" (include "envlabel.fullname" .)) }}
{{- end }}

{{/* envlabel.yaml: the configured keys over the chart's defaults: the SQLite file on the volume, or (PostgreSQL,
the URL comes from the Secret as ENVLABEL_STORE) leader election through a Lease in the release's namespace. */}}
{{- define "envlabel.config" -}}
{{- $defaults := dict "store" "sqlite:////var/lib/envlabel/envlabel.db" }}
{{- if include "envlabel.postgres" . }}
{{- $lease := dict "kind" "lease" "in_cluster" true "namespace" .Release.Namespace "lease_name" (include "envlabel.leaseName" .) }}
{{- $defaults = dict "leader_election" $lease }}
{{- end }}
{{- toYaml (merge (deepCopy .Values.config) $defaults) }}
{{- end }}
