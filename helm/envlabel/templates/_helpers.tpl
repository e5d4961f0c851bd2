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
the URL comes from the Secret as ENVLABEL_STORE) leader election through a Lease in the release's namespace.
With admission enabled and no admission.exempt_usernames configured, envlabel's defaults with the chart's own
service account (its name follows the release's) in place of system:serviceaccount:{namespace}:envlabel. */}}
{{- define "envlabel.config" -}}
{{- $defaults := dict "store" "sqlite:////var/lib/envlabel/envlabel.db" }}
{{- if include "envlabel.postgres" . }}
{{- $lease := dict "kind" "lease" "in_cluster" true "namespace" .Release.Namespace "lease_name" (include "envlabel.leaseName" .) }}
{{- $defaults = dict "leader_election" $lease }}
{{- end }}
{{- $config := merge (deepCopy .Values.config) $defaults }}
{{- if .Values.admission.enabled }}
{{- $admission := deepCopy ($config.admission | default dict) }}
{{- if not (hasKey $admission "exempt_usernames") }}
{{- $own := printf "system:serviceaccount:%s:%s" .Release.Namespace (include "envlabel.serviceAccountName" .) }}
{{- $_ := set $admission "exempt_usernames" (list $own "system:apiserver" "system:kube-controller-manager" "system:kube-scheduler" "system:serviceaccount:kube-system:*") }}
{{- end }}
{{- $_ := set $config "admission" $admission }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate (tls.crt, tls.key, ca.crt), mounted at /tls. */}}
{{- define "envlabel.tlsSecretName" -}}
{{- printf "%s-webhook-tls" (include "envlabel.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The DNS names the API server reaches the Service by: the serving certificate's SANs. */}}
{{- define "envlabel.serviceDNSNames" -}}
{{- $service := include "envlabel.fullname" . }}
{{- $namespace := .Release.Namespace }}
{{- toJson (list $service (printf "%s.%s" $service $namespace) (printf "%s.%s.svc" $service $namespace) (printf "%s.%s.svc.cluster.local" $service $namespace)) }}
{{- end }}

{{/* The CLUSTER of the webhook path: admission.cluster, else the in-cluster kubernetes source's cluster or name. */}}
{{- define "envlabel.admissionCluster" -}}
{{- $cluster := .Values.admission.cluster }}
{{- if not $cluster }}
{{- range (.Values.config.sources | default list) }}
{{- if and (not $cluster) (eq (toString .type) "kubernetes") .in_cluster }}
{{- $cluster = .cluster | default .name }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $cluster }}
{{- fail "admission.enabled needs the cluster's name for the webhook path: set admission.cluster, or keep a kubernetes source with in_cluster: true in config.sources (its targets are what the webhook decides)" }}
{{- end }}
{{- $cluster }}
{{- end }}

{{/* A probe from the values; with admission enabled the API port serves TLS, so an httpGet on it uses HTTPS. */}}
{{- define "envlabel.probe" -}}
{{- $probe := deepCopy .probe }}
{{- if and .root.Values.admission.enabled $probe.httpGet }}
{{- if has (toString $probe.httpGet.port) (list "http" "https") }}
{{- $_ := set $probe.httpGet "port" "https" }}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/* The API token list and the tokens the chart generated, as JSON {"tokens": [...], "generated": {key: token}}.
No api.tokens: one reader token (agents can ask, nobody can set overrides). An admin token only with
api.adminToken.generate. A generated token is read back from the Secret the last install wrote (`lookup`), so
upgrades keep it; where lookup sees no cluster (helm template, --dry-run, Argo CD, Flux) every render makes a new
one, which is why GitOps installs set api.tokens or api.existingSecret instead (docs/helm.md, "API tokens"). */}}
{{- define "envlabel.apiTokens" -}}
{{- $tokens := .Values.api.tokens | default list }}
{{- $wanted := list }}
{{- if not $tokens }}
{{- $wanted = append $wanted (list "reader-token" "helm-generated-reader" "reader") }}
{{- end }}
{{- if .Values.api.adminToken.generate }}
{{- $wanted = append $wanted (list "admin-token" "helm-generated-admin" "admin") }}
{{- end }}
{{- $existing := dict }}
{{- if $wanted }}
{{- $existing = (lookup "v1" "Secret" .Release.Namespace (include "envlabel.tokenSecretName" .)).data | default dict }}
{{- end }}
{{- $generated := dict }}
{{- range $wanted }}
{{- $key := index . 0 }}
{{- $token := "" }}
{{- if hasKey $existing $key }}
{{- $token = index $existing $key | b64dec }}
{{- else }}
{{- $token = randAlphaNum 43 }}
{{- end }}
{{- $_ := set $generated $key $token }}
{{- $tokens = append $tokens (dict "name" (index . 1) "role" (index . 2) "sha256" (sha256sum $token)) }}
{{- end }}
{{- toJson (dict "tokens" $tokens "generated" $generated) }}
{{- end }}
