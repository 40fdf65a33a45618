{{/*
Facts about the four services that are fixed by the binaries and the .proto contracts,
not tunable: the binary each Deployment runs, the gRPC service name (also the readiness
health-check name), whether it calls PaymentService, whether it is public (reachable from
the ingress gateway), and the retry class of each method (see values.yaml istio.routes).
The offline checks (deploy/tests) compare these with what the binaries report.
*/}}
{{- define "talentshare.catalog" -}}
order:
  binary: order-svc
  grpcService: talentshare.order.v1.OrderService
  callsPayment: true
  public: true
  methods:
    PlaceOrder: idempotent
    CancelOrder: idempotent
    GetOrder: read
    ListOrders: read
payment:
  binary: payment-svc
  grpcService: talentshare.payment.v1.PaymentService
  callsPayment: false
  public: false
  methods:
    Pay: idempotent
    Refund: idempotent
    GetPayment: read
    ListPayments: read
reservation:
  binary: reservation-svc
  grpcService: talentshare.reservation.v1.ReservationService
  callsPayment: true
  public: true
  methods:
    ConfirmReservation: idempotent
    RejectReservation: idempotent
    GetReservation: read
    ListReservations: read
mypage:
  binary: mypage-svc
  grpcService: talentshare.mypage.v1.MyPageService
  callsPayment: false
  public: true
  methods:
    GetMyPage: read
    GetMyPageEntry: read
    WatchMyPage: stream
{{- end }}

{{/* The catalog as a dict. */}}
{{- define "talentshare.services" -}}
{{- include "talentshare.catalog" . | fromYaml | toJson -}}
{{- end }}

{{- define "talentshare.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name prefix; each service's resources are "<fullname>-<service>" (at most 63
characters: the longest suffix is "-reservation", so the prefix is cut at 50).
*/}}
{{- define "talentshare.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "talentshare.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "talentshare.labels" -}}
helm.sh/chart: {{ include "talentshare.chart" . }}
app.kubernetes.io/name: {{ include "talentshare.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: talentshare
{{- end }}

{{/* Selector labels of the whole release. */}}
{{- define "talentshare.releaseSelector" -}}
app.kubernetes.io/name: {{ include "talentshare.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one service; call with (dict "root" $ "svc" "order"). */}}
{{- define "talentshare.selector" -}}
{{ include "talentshare.releaseSelector" .root }}
app.kubernetes.io/component: {{ .svc }}
{{- end }}

{{/* Name of one service's objects (Deployment, Service, ServiceAccount, ...). */}}
{{- define "talentshare.svcName" -}}
{{- printf "%s-%s" (include "talentshare.fullname" .root) .svc }}
{{- end }}

{{/* In-cluster DNS name of one service's Service. */}}
{{- define "talentshare.host" -}}
{{- printf "%s.%s.svc.%s" (include "talentshare.svcName" .) .root.Release.Namespace .root.Values.clusterDomain }}
{{- end }}

{{/* The gRPC port of one service. */}}
{{- define "talentshare.port" -}}
{{- (index .root.Values.services .svc).port }}
{{- end }}

{{/* SPIFFE principal of one service's ServiceAccount, as Istio AuthorizationPolicy wants it. */}}
{{- define "talentshare.principal" -}}
{{- printf "%s/ns/%s/sa/%s" .root.Values.istio.trustDomain .root.Release.Namespace (include "talentshare.svcName" .) }}
{{- end }}

{{/* Name of the Secret with DATABASE_URL / AMQP_URL. */}}
{{- define "talentshare.secretName" -}}
{{- default (printf "%s-connections" (include "talentshare.fullname" .)) .Values.connections.existingSecret }}
{{- end }}

{{- define "talentshare.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A service's value: services.<svc>.<key> if set, else the top-level <key>. */}}
{{- define "talentshare.setting" -}}
{{- $svc := index .root.Values.services .svc }}
{{- if hasKey $svc .key }}{{ index $svc .key | toJson }}{{ else }}{{ index .root.Values .key | toJson }}{{ end }}
{{- end }}

{{/* The hardened container securityContext (fixed: the services need nothing more). */}}
{{- define "talentshare.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "talentshare.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod annotations Istio reads (only when the mesh policy is on). */}}
{{- define "talentshare.istioPodAnnotations" -}}
{{- if .Values.istio.enabled }}
{{- if .Values.istio.nativeSidecar }}
sidecar.istio.io/nativeSidecar: "true"
{{- end }}
# Probes are rewritten to the sidecar agent (port 15020), which runs the gRPC health
# check against the app over localhost: kubelet needs no mesh certificate under STRICT.
sidecar.istio.io/rewriteAppHTTPProbers: "true"
proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": true}'
{{- end }}
{{- end }}
