{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "llama-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name; the runner and redis names add a suffix, so keep it short. */}}
{{- define "llama-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "llama-gateway.runnerName" -}}
{{- printf "%s-runner" (include "llama-gateway.fullname" .) -}}
{{- end -}}

{{- define "llama-gateway.redisName" -}}
{{- printf "%s-redis" (include "llama-gateway.fullname" .) -}}
{{- end -}}

{{- define "llama-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llama-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "llama-gateway.secretName" -}}
{{- default (include "llama-gateway.fullname" .) .Values.auth.existingSecret -}}
{{- end -}}

{{/* Labels ----------------------------------------------------------------------------- */}}

{{- define "llama-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "llama-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llama-gateway
{{- end -}}

{{/* All labels of one component's objects and pods: (dict "ctx" . "component" "gateway"). */}}
{{- define "llama-gateway.componentLabels" -}}
{{ include "llama-gateway.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Selector labels for one component: call with (dict "ctx" . "component" "gateway"). */}}
{{- define "llama-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llama-gateway.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Settings the gateway reads --------------------------------------------------------- */}}

{{/* The static backend list: one URL per runner pod, by its stable StatefulSet DNS name. */}}
{{- define "llama-gateway.backends" -}}
{{- $runner := include "llama-gateway.runnerName" . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.runner.replicas) -}}
{{- $urls = append $urls (printf "http://%s-%d.%s.%s.svc.cluster.local:%d" $runner $i $runner $.Release.Namespace (int $.Values.runner.port)) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{- define "llama-gateway.image" -}}
{{- printf "%s:%s" .image.repository (toString (default .default .image.tag)) -}}
{{- end -}}
