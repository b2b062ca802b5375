{{/* Names and labels. */}}
{{- define "sessionvalidator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sessionvalidator.fullname" -}}
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

{{- define "sessionvalidator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sessionvalidator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sessionvalidator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sessionvalidator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sessionvalidator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sessionvalidator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sessionvalidator.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/* A probe: native gRPC in plaintext, the image's healthcheck command over TLS. */}}
{{- define "sessionvalidator.probe" -}}
{{- if .root.Values.tls.enabled -}}
exec:
  command: ["sessionvalidator", "healthcheck", "--service", {{ .service | quote }}, "--timeout", "2"]
timeoutSeconds: 3
{{- else -}}
grpc:
  port: {{ .root.Values.grpc.port }}
  service: {{ .service | quote }}
{{- end }}
{{- end }}
