{{/*
The alert rules of this release: the `groups` of a Prometheus rule file, used as the
PrometheusRule's spec (and fed to promtool by the offline checks). Each alert comes from
values metrics.prometheusRule.alerts.<name> (enabled, severity, for, thresholds), carries
summary, description and runbook annotations (Prometheus fills {{ $labels.x }} and
{{ $value }} in when it fires), and selects only this release's scrape targets
(talentshare.promSelector). README.md "Alerts" explains each one.
*/}}
{{- define "talentshare.alertRules" -}}
{{- $sel := include "talentshare.promSelector" . }}
{{- $alerts := .Values.metrics.prometheusRule.alerts }}
{{- $extraLabels := .Values.metrics.prometheusRule.alertLabels | default dict }}
{{- $runbookUrl := .Values.metrics.prometheusRule.runbookUrl }}
{{- $ns := "{{ $labels.namespace }}" }}
{{- $job := "{{ $labels.job }}" }}
{{- $queue := "{{ $labels.queue }}" }}
{{- $pod := "{{ $labels.pod }}" }}
{{- /* The consumers' queues are <exchange>.<consumer>, their dead-letter queues
       <exchange>.<consumer>.dlq (README "Events and delivery"). */}}
{{- $exchange := .Values.config.EVENTS_EXCHANGE | default "talentshare.events" }}
{{- $rules := list }}

{{- with $alerts.outboxStale }}{{- if .enabled }}
{{- $rules = append $rules (dict
  "alert" "TalentshareOutboxStale"
  "for" .for
  "severity" .severity
  "expr" (printf "max by (namespace, job) (outbox_oldest_event_age_seconds{%s}) > %d" $sel (int .maxAgeSeconds))
  "summary" (printf "%s: outbox events wait longer than %ds" $job (int .maxAgeSeconds))
  "description" (printf "The oldest event in %s's outbox (namespace %s) is {{ $value | humanizeDuration }} old: its relay is not publishing (RabbitMQ unreachable, or the topology missing). Orders and payments are still taken, but the other services hear of them only once the relay publishes again; nothing is lost." $job $ns)
  "runbook" (printf "kubectl -n %s logs deploy/%s | grep -iE 'amqp|outbox|topology'; make RabbitMQ reachable, or declare the topology again (talentshare topology, the chart's topology Job); the backlog then drains by itself (outbox_backlog_rows falls to 0)" $ns $job)
) }}
{{- end }}{{- end }}

{{- with $alerts.consumerLag }}{{- if .enabled }}
{{- $rules = append $rules (dict
  "alert" "TalentshareConsumerLagHigh"
  "for" .for
  "severity" .severity
  "expr" (printf "histogram_quantile(0.99, sum by (namespace, job, queue, le) (rate(event_lag_seconds_bucket{%s}[%s]))) > %v" $sel .window .p99Seconds)
  "summary" (printf "consumer %s: 99%% of its events are applied within {{ $value | humanizeDuration }} of happening (threshold %vs)" $queue .p99Seconds)
  "description" (printf "Over %s, the 99th percentile of the time from an event's occurred_at until consumer %s (%s) applied it is {{ $value | humanizeDuration }}: the consumer falls behind its queue, so bookings and my page show changes late." .window $queue $job)
  "runbook" (printf "rabbitmqctl list_queues name messages_ready consumers | grep -F %s.%s; while it grows, scale %s out (autoscaling.maxReplicas) or fix what slows it (db_pool_connections in use at db_pool_max_connections, a slow PostgreSQL); the lag falls as it catches up" $exchange $queue $job)
) }}
{{- end }}{{- end }}

{{- with $alerts.consumerStalled }}{{- if .enabled }}
{{- $rules = append $rules (dict
  "alert" "TalentshareConsumerStalled"
  "for" .for
  "severity" .severity
  "expr" (printf "max by (namespace, job, queue) (event_queue_messages{%s}) > 0\nunless on (namespace, job, queue)\nsum by (namespace, job, queue) (rate(events_consumed_total{%s,outcome!=\"retried\"}[%s])) > 0" $sel $sel .window)
  "summary" (printf "consumer %s: {{ $value }} message(s) wait in its queue and it settled none in %s" $queue .window)
  "description" (printf "{{ $value }} message(s) are ready in %s.%s while consumer %s (%s, namespace %s) applied, deduplicated or dead-lettered none over %s (a retry is no progress: the message stays): the consumer is stuck (its database unreachable, so it pauses and reads NOT_SERVING; RabbitMQ refusing its consumer, a permission; its link lost), and bookings and my page stop hearing of changes. The events wait in the queue; nothing is lost." $exchange $queue $queue $job $ns .window)
  "runbook" (printf "kubectl -n %s logs deploy/%s | grep -iE 'rabbitmq|database|consum|retry' names the consumer's error (database unreachable, RabbitMQ refusing it: a permission); talentshare dlq list --consumer %s; kubectl -n %s get pods (readiness); only after reading the logs, kubectl -n %s rollout restart deploy/%s" $ns $job $queue $ns $ns $job)
) }}
{{- end }}{{- end }}

{{- with $alerts.consumerStuck }}{{- if .enabled }}
{{- $rules = append $rules (dict
  "alert" "TalentshareConsumerStuck"
  "for" .for
  "severity" .severity
  "expr" (printf "max by (namespace, job, queue) (event_in_hand_seconds{%s}) > %d" $sel (int .heldSeconds))
  "summary" (printf "consumer %s has held its deliveries for {{ $value }} s without settling them" $queue)
  "description" (printf "Consumer %s (%s, namespace %s) has held the deliveries it is handling (up to its prefetch of 64) for more than %ds without acknowledging, retrying or dead-lettering them, for %s. RabbitMQ does not count them as ready, so event_queue_messages can stay 0 and TalentshareConsumerStalled cannot see it. The held deliveries wait unacknowledged: no delivery attempt is spent and nothing is lost, but bookings and my page stop hearing of changes. The usual cause is its database unreachable (the service then reads NOT_SERVING); otherwise a handler is blocked." $queue $job $ns (int .heldSeconds) .for)
  "runbook" (printf "kubectl -n %s logs deploy/%s | grep -iE 'database|consum' names what blocks it; check service_ready{namespace=\"%s\",job=\"%s\"} and that service's database (reachable, max_connections, a failover); only after reading the logs, kubectl -n %s rollout restart deploy/%s" $ns $job $ns $job $ns $job)
) }}
{{- end }}{{- end }}

{{- with $alerts.queueBacklog }}{{- if .enabled }}
{{- $rules = append $rules (dict
  "alert" "TalentshareQueueBacklog"
  "for" .for
  "severity" .severity
  "expr" (printf "max by (namespace, job, queue) (event_queue_messages{%s}) > %d" $sel (int .maxMessages))
  "summary" (printf "consumer %s: {{ $value }} messages wait in its queue (threshold %d)" $queue (int .maxMessages))
  "description" (printf "More than %d messages have been ready in %s.%s for %s: consumer %s (%s, namespace %s) takes them slower than they arrive (a burst, too few replicas, a slow database), so bookings and my page show changes late. TalentshareConsumerStalled fires instead when it takes none at all." (int .maxMessages) $exchange $queue .for $queue $job $ns)
  "runbook" (printf "rabbitmqctl list_queues name messages_ready consumers | grep -F %s.%s; while it grows, scale %s out (autoscaling.maxReplicas) or fix what slows it (db_pool_connections in use at db_pool_max_connections, a slow PostgreSQL); it drains by itself once the consumer keeps up" $exchange $queue $job)
) }}
{{- end }}{{- end }}

{{- with $alerts.deadLetters }}{{- if .enabled }}
{{- $rules = append $rules (dict
  "alert" "TalentshareDeadLetters"
  "for" .for
  "severity" .severity
  "expr" (printf "max by (namespace, job, queue) (dead_letter_queue_messages{%s}) > 0" $sel)
  "summary" (printf "{{ $value }} event(s) in consumer %s's dead-letter queue" $queue)
  "description" (printf "Consumer %s (%s) dead-lettered events it could not apply (undecodable, an unknown type, a permanent error, or 10 failed deliveries): their effects are missing until the events are replayed. Only poison should ever rest there. The alert lasts until %s.%s.dlq is empty, and replay skips undecodable bodies while the dlq tool deletes nothing: after the fix and the replay, what talentshare dlq list still shows as <undecodable: N bytes> can never be applied, and rabbitmqctl purge_queue %s.%s.dlq (with -p <vhost> when AMQP_URL names one) removes it. Purge removes every message in the queue, replayable ones too: only after the replay, and only when the list shows nothing else (an event that still fails is dead-lettered again)." $queue $job $exchange $queue $exchange $queue)
  "runbook" (printf "talentshare dlq list --consumer %s; fix the cause; talentshare dlq replay --consumer %s --all (admin AMQP_URL); once talentshare dlq list --consumer %s shows only <undecodable: N bytes>, rabbitmqctl purge_queue %s.%s.dlq (it removes everything: never before the replay)" $queue $queue $queue $exchange $queue)
) }}
{{- end }}{{- end }}

{{- with $alerts.paymentBreakerOpen }}{{- if .enabled }}
{{- $rules = append $rules (dict
  "alert" "TalentsharePaymentBreakerOpen"
  "for" .for
  "severity" .severity
  "expr" (printf "max by (namespace, job) (payment_client_breaker_state{%s,state!=\"closed\"}) == 1" $sel)
  "summary" (printf "%s: the circuit breaker in front of payment-svc is open" $job)
  "description" (printf "In at least one %s pod the payment client's breaker has not been closed for %s (open, or half-open between probes: it alternates while payment-svc fails). Payment calls fail fast with UNAVAILABLE: PlaceOrder (order-svc) or Confirm/Reject (reservation-svc) fail and change nothing." $job .for)
  "runbook" (printf "kubectl -n %s get pods -l app.kubernetes.io/component=payment, then its logs: make payment-svc answer; the breaker closes at its next probe (PAYMENT_BREAKER_COOLDOWN), and a PlaceOrder retried with the same request_id completes once" $ns)
) }}
{{- end }}{{- end }}

{{- with $alerts.errorRatio }}{{- if .enabled }}
{{- $calls := printf "grpc_server_handled_total{%s,grpc_service=~\"talentshare[.].+\"" $sel }}
{{- $rules = append $rules (dict
  "alert" "TalentshareErrorRatioHigh"
  "for" .for
  "severity" .severity
  "expr" (printf "(\n  sum by (namespace, job) (rate(%s,grpc_code=~\"Internal|Unavailable|DeadlineExceeded|Unknown|DataLoss\"}[%s]))\n/\n  sum by (namespace, job) (rate(%s}[%s]))\n) > %v\nand\nsum by (namespace, job) (rate(%s}[%s])) >= %v" $calls .window $calls .window .ratio $calls .window .minRequestsPerSecond)
  "summary" (printf "%s: {{ $value | humanizePercentage }} of its calls fail with a server fault" $job)
  "description" (printf "Over %s, {{ $value | humanizePercentage }} of %s's application calls ended Internal, Unavailable, DeadlineExceeded, Unknown or DataLoss (threshold %v, counted only at %v calls/s or more; health checks and reflection are not counted)." .window $job .ratio .minRequestsPerSecond)
  "runbook" (printf "In Prometheus, sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{namespace=\"%s\",job=\"%s\"}[5m])) names the failing method; kubectl -n %s logs deploy/%s | grep -i error gives one line per failed call with its cause chain" $ns $job $ns $job)
) }}
{{- end }}{{- end }}

{{- with $alerts.readinessFlapping }}{{- if .enabled }}
{{- $rules = append $rules (dict
  "alert" "TalentshareReadinessFlapping"
  "for" .for
  "severity" .severity
  "expr" (printf "changes(service_ready{%s}[%s]) > %d" $sel .window (int .maxChanges))
  "summary" (printf "%s changed readiness {{ $value }} times in %s" $pod .window)
  "description" (printf "Readiness follows the service's database (checked every DATABASE_CHECK_INTERVAL) and shutdown: %s (%s) turned NOT_SERVING and back repeatedly, so calls to it fail with UNAVAILABLE on and off." $pod $job)
  "runbook" (printf "kubectl -n %s logs %s | grep -i database, and kubectl -n %s describe pod %s; check PostgreSQL (reachable, max_connections, a failover) for that service's database" $ns $pod $ns $pod)
) }}
{{- end }}{{- end }}

{{- with $alerts.scrapeFailing }}{{- if .enabled }}
{{- $rules = append $rules (dict
  "alert" "TalentshareScrapeFailing"
  "for" .for
  "severity" .severity
  "expr" (printf "up{%s} == 0" $sel)
  "summary" (printf "Prometheus cannot scrape %s (%s)" $pod $job)
  "description" (printf "GET /metrics on {{ $labels.instance }} fails: the pod is down, or the scrape is refused (NetworkPolicy, Istio mTLS, AuthorizationPolicy). The other talentshare alerts are blind for this pod.")
  "runbook" (printf "Prometheus /targets shows the scrape error for %s; kubectl -n %s get pod %s; under Istio, Prometheus needs its sidecar's certificates (chart README, Scraping under Istio)" $job $ns $pod)
) }}
{{- end }}{{- end }}
groups:
  - name: {{ include "talentshare.fullname" . }}
    rules:
      {{- range $rule := $rules }}
      - alert: {{ .alert }}
        expr: |-
          {{- .expr | nindent 10 }}
        for: {{ .for }}
        labels:
          {{- merge (dict "severity" .severity) (deepCopy $extraLabels) | toYaml | nindent 10 }}
        annotations:
          summary: {{ .summary | quote }}
          description: {{ .description | quote }}
          runbook: {{ .runbook | quote }}
          {{- with $runbookUrl }}
          runbook_url: {{ printf "%s#%s" . (lower $rule.alert) | quote }}
          {{- end }}
      {{- end }}
{{- end }}
