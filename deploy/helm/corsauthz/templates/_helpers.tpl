{{/*
The chart name, cut to 63 characters (a label value's limit).
*/}}
{{- define "corsauthz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of every object: the release name when it already says
corsauthz, so that `helm install corsauthz` gives the same names as the
kustomize base.
*/}}
{{- define "corsauthz.fullname" -}}
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
Selector labels: immutable on a Deployment, so only the name and the
release.
*/}}
{{- define "corsauthz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "corsauthz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "corsauthz.labels" -}}
{{ include "corsauthz.selectorLabels" . }}
app.kubernetes.io/version: {{ include "corsauthz.tag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "corsauthz.tag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{- define "corsauthz.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "corsauthz.tag" .) }}
{{- end }}
{{- end }}

{{- define "corsauthz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "corsauthz.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the existing ServiceAccount to use when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "corsauthz.configMapName" -}}
{{- default (printf "%s-config" (include "corsauthz.fullname" .)) .Values.config.existingConfigMap }}
{{- end }}
