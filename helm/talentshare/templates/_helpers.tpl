{{/*
Facts about the four services that are fixed by the binaries and the .proto contracts,
not tunable: the binary each Deployment runs, the gRPC service name (also the readiness
health-check name), whether it calls PaymentService, whether it is public (reachable from
the ingress gateway, with an end-user JWT), the methods only managers may call, the retry class of each method (see values.yaml istio.routes), and the PostgreSQL
connections a replica holds outside its pool (listenConnections).
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
    Void: idempotent
    GetPayment: read
    ListPayments: read
reservation:
  binary: reservation-svc
  grpcService: talentshare.reservation.v1.ReservationService
  callsPayment: true
  public: true
  # Methods only talent managers may call (JWT roles claim contains "manager").
  managerMethods: [ConfirmReservation, RejectReservation, ListReservations]
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
  # The change feed of WatchMyPage: one LISTEN connection per replica, besides the pool.
  listenConnections: 1
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

{{/*
"true" when the Istio resources render: istio.enabled true, or "auto" and the cluster
serves security.istio.io/v1; "" otherwise.
*/}}
{{- define "talentshare.istioOn" -}}
{{- $e := .Values.istio.enabled }}
{{- if eq (toString $e) "auto" }}
{{- if .Capabilities.APIVersions.Has "security.istio.io/v1" }}true{{ end }}
{{- else if $e }}true{{ end }}
{{- end }}

{{/*
Which ingress renders: "gateway-api" (Gateway + GRPCRoute), "istio" (Istio Gateway +
VirtualService) or "" (ingress.enabled false).
*/}}
{{- define "talentshare.ingressApi" -}}
{{- if .Values.ingress.enabled }}
{{- if eq .Values.ingress.api "auto" }}
{{- if .Capabilities.APIVersions.Has "gateway.networking.k8s.io/v1/GRPCRoute" }}gateway-api{{ else }}istio{{ end }}
{{- else }}{{ .Values.ingress.api }}{{ end }}
{{- end }}
{{- end }}

{{/* Name of the ingress Gateway (both APIs) and its GRPCRoute / VirtualService. */}}
{{- define "talentshare.gatewayName" -}}
{{- printf "%s-ingress" (include "talentshare.fullname" .) }}
{{- end }}

{{/*
Principals that may call the public services from outside the mesh: the configured ingress
gateways, plus the gateway Istio deploys for a Gateway API Gateway of class istio
(ServiceAccount <gateway>-<class> in the release namespace). JSON list.
*/}}
{{- define "talentshare.ingressPrincipals" -}}
{{- $p := .Values.istio.authorization.ingressPrincipals | default list }}
{{- if and (eq (include "talentshare.ingressApi" .) "gateway-api") (eq .Values.ingress.gatewayApi.gatewayClassName "istio") }}
{{- $p = append $p (printf "%s/ns/%s/sa/%s-istio" .Values.istio.trustDomain .Release.Namespace (include "talentshare.gatewayName" .)) }}
{{- end }}
{{- $p | uniq | toJson }}
{{- end }}

{{/* The request principals (issuer/subject) the public services accept: the configured issuer's. */}}
{{- define "talentshare.requestPrincipal" -}}
{{- printf "%s/*" .Values.auth.issuer }}
{{- end }}

{{/*
Refuses to render what would not run or not be safe: missing auth settings, placeholder
passwords, a collector port the NetworkPolicies do not open, an incomplete ingress.
Included once (deployment.yaml).
*/}}
{{- define "talentshare.validate" -}}
{{- $ := . }}
{{- if not .Values.auth.issuer }}{{ fail "auth.issuer is required: the public services (order, reservation, mypage) verify end-user JWTs and refuse to start without AUTH_ISSUER" }}{{ end }}
{{- if not .Values.auth.audience }}{{ fail "auth.audience is required: the public services refuse to start without AUTH_AUDIENCE" }}{{ end }}
{{- if not (or .Values.auth.jwksUri .Values.auth.jwksConfigMap) }}{{ fail "auth.jwksUri (an https URL of the issuer's JWKS) or auth.jwksConfigMap is required: the public services refuse to start without AUTH_JWKS" }}{{ end }}
{{- if and (include "talentshare.istioOn" .) (not .Values.auth.jwksUri) }}{{ fail "auth.jwksUri is required when Istio is on: the RequestAuthentication fetches the JWKS from it" }}{{ end }}
{{- if not .Values.connections.existingSecret }}
{{- range $key := list "order" "payment" "reservation" "mypage" "admin" }}
{{- if contains ":change-me@" (index $.Values.connections.amqpUrls $key | default "") }}
{{- fail (printf "connections.amqpUrls.%s still holds the placeholder password change-me: set real credentials, or connections.existingSecret" $key) }}
{{- end }}
{{- end }}
{{- range $key := list "order" "payment" "reservation" "mypage" }}
{{- if contains ":change-me@" (index $.Values.connections.databaseUrls $key | default "") }}
{{- fail (printf "connections.databaseUrls.%s still holds the placeholder password change-me: set real credentials, or connections.existingSecret" $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- $budget := include "talentshare.connectionBudget" . | fromJson }}
{{- if gt ($budget.total | int) ($budget.limit | int) }}
{{- fail (printf "database.maxConnections %d is less than the %d PostgreSQL connections the services may hold at full scale (%s; pods = autoscaling.maxReplicas, or replicaCount without autoscaling, plus 1 of rollout surge; per pod = database.poolSize or services.<name>.database.poolSize, plus mypage's LISTEN connection): lower database.poolSize or autoscaling.maxReplicas, or raise database.maxConnections if the server allows it" ($budget.limit | int) ($budget.total | int) (include "talentshare.connectionBudgetTerms" $budget)) }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- range $svc, $values := .Values.services }}
{{- if eq (int $values.port) (int $.Values.metrics.port) }}
{{- fail (printf "metrics.port %d is services.%s.port, the gRPC port: give the metrics their own port" (int $.Values.metrics.port) $svc) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.tracing.otlpEndpoint .Values.networkPolicy.enabled }}
{{- $otlpPort := include "talentshare.otlpPort" . | int }}
{{- $open := list }}
{{- range .Values.networkPolicy.egress.otlp.ports }}{{ $open = append $open (int .) }}{{ end }}
{{- if not (has $otlpPort $open) }}
{{- fail (printf "tracing.otlpEndpoint %s reaches port %d, which networkPolicy.egress.otlp.ports %s does not open: the NetworkPolicies would drop every span. Add %d to networkPolicy.egress.otlp.ports, or give the endpoint the collector's port (OTLP/gRPC: 4317; without a port it is 80)" .Values.tracing.otlpEndpoint $otlpPort (toJson $open) $otlpPort) }}
{{- end }}
{{- end }}
{{- range .Values.grpcWeb.corsAllowedOrigins }}
{{- $origin := toString . }}
{{- if eq $origin "*" }}
{{- fail "grpcWeb.corsAllowedOrigins: `*` is not allowed: list each browser origin, http(s)://host[:port] (the services refuse to start with `*`)" }}
{{- end }}
{{- $port := regexFind ":[0-9]+$" (regexReplaceAll "^https?://" $origin "") | trimPrefix ":" }}
{{- if or (not (regexMatch (include "talentshare.originPattern" $) $origin)) (and $port (gt (int $port) 65535)) }}
{{- fail (printf "grpcWeb.corsAllowedOrigins: %q is not a browser origin: expected http(s)://host[:port] with nothing after it (no path, not even /, no query, fragment or user), e.g. https://app.example.com (the services refuse to start with it)" $origin) }}
{{- end }}
{{- end }}
{{- if .Values.ingress.enabled }}
{{- if not .Values.ingress.host }}{{ fail "ingress.host is required when ingress.enabled is true" }}{{ end }}
{{- if not .Values.ingress.tlsSecretName }}{{ fail "ingress.tlsSecretName is required when ingress.enabled is true (the gateway terminates TLS)" }}{{ end }}
{{- if and (eq (include "talentshare.ingressApi" .) "istio") (not (include "talentshare.istioOn" .)) }}{{ fail "ingress.enabled needs Gateway API (GRPCRoute v1) or Istio (istio.enabled): neither is available" }}{{ end }}
{{- end }}
{{- end }}

{{/*
A browser origin as the services accept it in CORS_ALLOWED_ORIGINS: http or https, a DNS
name, an IPv4 address or a bracketed IPv6 address, an optional port, nothing after it.
*/}}
{{- define "talentshare.originPattern" -}}
^https?://([A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$
{{- end }}

{{/* Labels of a service's pods: podLabels first, the chart's own labels win (no duplicate keys). */}}
{{- define "talentshare.podLabels" -}}
{{- $own := include "talentshare.labels" .root | fromYaml }}
{{- $_ := set $own "app.kubernetes.io/component" .svc }}
{{- if include "talentshare.istioOn" .root }}
{{- $_ := set $own "sidecar.istio.io/inject" "true" }}
{{- end }}
{{- merge $own (deepCopy (.root.Values.podLabels | default dict)) | toYaml }}
{{- end }}

{{/* The fewest replicas a service runs (autoscaling.minReplicas or replicaCount). */}}
{{- define "talentshare.minReplicas" -}}
{{- $values := index .root.Values.services .svc }}
{{- $autoscaling := merge (deepCopy ($values.autoscaling | default dict)) (deepCopy .root.Values.autoscaling) }}
{{- if $autoscaling.enabled }}{{ $autoscaling.minReplicas }}{{ else }}{{ include "talentshare.setting" (dict "root" .root "svc" .svc "key" "replicaCount") }}{{ end }}
{{- end }}

{{/* The most replicas a service runs (autoscaling.maxReplicas or replicaCount). */}}
{{- define "talentshare.maxReplicas" -}}
{{- $values := index .root.Values.services .svc }}
{{- $autoscaling := merge (deepCopy ($values.autoscaling | default dict)) (deepCopy .root.Values.autoscaling) }}
{{- if $autoscaling.enabled }}{{ $autoscaling.maxReplicas }}{{ else }}{{ include "talentshare.setting" (dict "root" .root "svc" .svc "key" "replicaCount") }}{{ end }}
{{- end }}

{{/* Pods a rollout adds over the replica count (the Deployments' maxSurge). */}}
{{- define "talentshare.maxSurge" -}}1{{- end }}

{{/* One service's pool settings, services.<svc>.database over database (JSON). */}}
{{- define "talentshare.database" -}}
{{- $values := index .root.Values.services .svc }}
{{- merge (deepCopy ($values.database | default dict)) (deepCopy .root.Values.database) | toJson }}
{{- end }}

{{/*
The PostgreSQL connection budget at full scale (JSON): per service the most pods
(maximum replicas plus the rollout surge: old pods hold their pools until they are gone),
the connections of one pod (its pool plus the catalog's listenConnections) and their
product; the total over the services, and the limit database.maxConnections.
*/}}
{{- define "talentshare.connectionBudget" -}}
{{- $services := include "talentshare.services" . | fromJson }}
{{- $rows := dict }}
{{- $total := 0 }}
{{- range $svc, $facts := $services }}
{{- $ctx := dict "root" $ "svc" $svc }}
{{- $pods := add (include "talentshare.maxReplicas" $ctx | int) (include "talentshare.maxSurge" $ | int) }}
{{- $pool := (include "talentshare.database" $ctx | fromJson).poolSize | int }}
{{- $perPod := add $pool ($facts.listenConnections | default 0 | int) }}
{{- $_ := set $rows $svc (dict "pods" $pods "poolSize" $pool "perPod" $perPod "connections" (mul $pods $perPod)) }}
{{- $total = add $total (mul $pods $perPod) }}
{{- end }}
{{- dict "services" $rows "total" $total "limit" (.Values.database.maxConnections | int) | toJson }}
{{- end }}

{{/* The budget in words: "order 6 pods x 3 = 18, ..." (one entry per service). */}}
{{- define "talentshare.connectionBudgetTerms" -}}
{{- $terms := list }}
{{- range $svc, $row := .services }}
{{- $terms = append $terms (printf "%s %d pods x %d = %d" $svc ($row.pods | int) ($row.perPod | int) ($row.connections | int)) }}
{{- end }}
{{- join ", " $terms }}
{{- end }}

{{/*
The TCP port the services reach the OTLP collector of tracing.otlpEndpoint on: the URL's
port (the schema, like the services, requires one).
*/}}
{{- define "talentshare.otlpPort" -}}
{{- regexFind ":[0-9]+$" (urlParse .Values.tracing.otlpEndpoint).host | trimPrefix ":" }}
{{- end }}

{{/* Where the JWKS ConfigMap is mounted. */}}
{{- define "talentshare.jwksDir" -}}/etc/talentshare/jwks{{- end }}
{{- define "talentshare.jwksCaDir" -}}/etc/talentshare/jwks-ca{{- end }}

{{/* Pod annotations Istio reads (only when the mesh policy is on). */}}
{{- define "talentshare.istioPodAnnotations" -}}
{{- if include "talentshare.istioOn" . }}
{{- if .Values.istio.nativeSidecar }}
sidecar.istio.io/nativeSidecar: "true"
{{- end }}
# Probes are rewritten to the sidecar agent (port 15020), which runs the gRPC health
# check against the app over localhost: kubelet needs no mesh certificate under STRICT.
sidecar.istio.io/rewriteAppHTTPProbers: "true"
proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": true}'
{{- end }}
{{- end }}

{{/* The RequestAuthentication jwtRules entry (services and the ingress gateway). */}}
{{- define "talentshare.jwtRule" -}}
- issuer: {{ .Values.auth.issuer | quote }}
  audiences:
    - {{ .Values.auth.audience | quote }}
  jwksUri: {{ .Values.auth.jwksUri | quote }}
  forwardOriginalToken: true
{{- end }}

{{/*
"true" when the ServiceMonitor renders: metrics on, and metrics.serviceMonitor.enabled
true, or "auto" and the cluster serves monitoring.coreos.com/v1 ServiceMonitor.
*/}}
{{- define "talentshare.serviceMonitorOn" -}}
{{- if .Values.metrics.enabled }}
{{- $e := .Values.metrics.serviceMonitor.enabled }}
{{- if eq (toString $e) "auto" }}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor" }}true{{ end }}
{{- else if $e }}true{{ end }}
{{- end }}
{{- end }}

{{/* The same for the PrometheusRule (monitoring.coreos.com/v1 PrometheusRule). */}}
{{- define "talentshare.prometheusRuleOn" -}}
{{- if .Values.metrics.enabled }}
{{- $e := .Values.metrics.prometheusRule.enabled }}
{{- if eq (toString $e) "auto" }}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule" }}true{{ end }}
{{- else if $e }}true{{ end }}
{{- end }}
{{- end }}

{{/* The scraping Prometheus' mesh identity (SPIFFE principal). */}}
{{- define "talentshare.prometheusPrincipal" -}}
{{- printf "%s/ns/%s/sa/%s" .Values.istio.trustDomain .Values.metrics.prometheus.namespace .Values.metrics.prometheus.serviceAccount }}
{{- end }}

{{/*
PromQL label matchers of this release's scrape targets, as the ServiceMonitor makes them:
the release namespace, and job = the Service's name (the Prometheus Operator's default
job label). Every alert and recording expression uses them, so two releases (or two
namespaces) never mix.
*/}}
{{- define "talentshare.promSelector" -}}
{{- $services := include "talentshare.services" . | fromJson }}
{{- printf "namespace=%q,job=~%q" .Release.Namespace (printf "%s-(%s)" (include "talentshare.fullname" .) (keys $services | sortAlpha | join "|")) }}
{{- end }}

{{/* The chart's labels plus extra ones (a selector's); the chart's win, each key rendered once. */}}
{{- define "talentshare.extraLabels" -}}
{{- merge (include "talentshare.labels" .root | fromYaml) (deepCopy (.extra | default dict)) | toYaml }}
{{- end }}
