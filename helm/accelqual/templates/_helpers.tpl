{{/* Names, labels and computed settings shared by the templates. */}}

{{- define "accelqual.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name when it already contains the chart name. */}}
{{- define "accelqual.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "accelqual.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "accelqual.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The operator pods (probe pods carry app.kubernetes.io/component=probe, so they never match). */}}
{{- define "accelqual.selectorLabels" -}}
app.kubernetes.io/name: {{ include "accelqual.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "accelqual.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "accelqual.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "accelqual.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A probe image reference: include "accelqual.probeImage" (list $ "cuda") */}}
{{- define "accelqual.probeImage" -}}
{{- $root := index . 0 -}}
{{- $image := index $root.Values.probeImages (index . 1) -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{- define "accelqual.probeNamespace" -}}
{{- default .Release.Namespace .Values.operator.probeNamespace -}}
{{- end -}}

{{/* "true" when the replicas use kopf peering (more than one replica, or asked for). */}}
{{- define "accelqual.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}
