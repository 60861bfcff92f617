{{/* The chart's name, or nameOverride. */}}
{{- define "jobq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name: fullnameOverride, or release-chart. */}}
{{- define "jobq.fullname" -}}
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

{{/* The example worker's resource name. */}}
{{- define "jobq.workerName" -}}
{{- printf "%s-worker" (include "jobq.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "jobq.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "jobq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selects the server's pods. */}}
{{- define "jobq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/* Selects the example worker's pods. */}}
{{- define "jobq.workerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "jobq.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{/* image:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "jobq.image" -}}
{{- printf "%s:%s" .image.repository (default .chart.AppVersion .image.tag) }}
{{- end }}

{{/* Kubernetes' grace after SIGTERM: longer than jobq's own. */}}
{{- define "jobq.terminationGrace" -}}
{{- $own := int .Values.config.shutdownGraceSeconds }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $own 10 }}
{{- else }}
{{- $set := int .Values.terminationGracePeriodSeconds }}
{{- if le $set $own }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than config.shutdownGraceSeconds (%d), or Kubernetes kills jobq before it drains" $set $own) }}
{{- end }}
{{- $set }}
{{- end }}
{{- end }}

{{/* The gRPC address workers and producers in the cluster use. */}}
{{- define "jobq.serverUrl" -}}
{{- $scheme := ternary "https" "http" .Values.tls.enabled }}
{{- printf "%s://%s.%s.svc:%d" $scheme (include "jobq.fullname" .) .Release.Namespace (int .Values.ports.grpc) }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "jobq.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jobq.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The PromQL label matchers that pick this release's server. */}}
{{- define "jobq.promSelector" -}}
{{- printf "namespace=%q,service=%q" .Release.Namespace (include "jobq.fullname" .) }}
{{- end }}

{{/*
Whether jobq keeps a journal on the claim: persistence on, and no postgres
store (which keeps the jobs in the database).
*/}}
{{- define "jobq.journal" -}}
{{- if and .Values.persistence.enabled (not .Values.store.postgres.enabled) -}}true{{- end -}}
{{- end }}

{{/*
Whether the dashboard is served beyond the pod: it is on and has a login
(auth on). Without auth it stays on the pod's loopback.
*/}}
{{- define "jobq.webExposed" -}}
{{- if and .Values.web.enabled .Values.auth.enabled -}}true{{- end -}}
{{- end }}
