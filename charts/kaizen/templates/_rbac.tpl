{{/*
The operator's permissions on namespaced objects, shared by the ClusterRole (all namespaces watched) and
the per-namespace Roles (config.namespaces set). Least privilege: no wildcard, no `update` where a patch
does, nothing the controllers don't call.
*/}}
{{- define "kaizen.namespacedRules" -}}
# Incidents: watched to derive phase, durations and follow-up progress. `create` because a Canary
# that rolls back with spec.onRollback.openIncident opens a new Incident. Spec is the user's: the
# operator never deletes it, and patches it only with the Alertmanager receiver enabled (server-side
# apply of the fields it sets on the Incidents it opened, under its own field manager).
- apiGroups: ["kaizen.dev"]
  resources: ["incidents"]
  verbs: ["get", "list", "watch", "create"{{ if .Values.config.alertmanager.enabled }}, "patch"{{ end }}]
# ActionItems: watched for deadlines, reminders, escalation and verification. Read-only: everything
# the operator derives goes to the status subresource.
# With the feedback intake enabled, `create` and `patch`: it creates one Improvement item per pain
# point by server-side apply under its own field manager (kaizen-feedback), once; spec is then the user's.
{{- $feedback := and .Values.config.feedback .Values.config.feedback.enabled }}
- apiGroups: ["kaizen.dev"]
  resources: ["actionitems"]
  verbs: ["get", "list", "watch"{{ if $feedback }}, "create", "patch"{{ end }}]
# Canaries: watched to drive rollouts. `patch` only to add/remove the operator's finalizer (which
# hands the target Deployment back before a Canary goes away); spec is never written.
- apiGroups: ["kaizen.dev"]
  resources: ["canaries"]
  verbs: ["get", "list", "watch", "patch"]
# Status of every kind: the operator's output (phase, conditions, observedGeneration, counters),
# written with patches; `get` to read it back.
- apiGroups: ["kaizen.dev"]
  resources: ["incidents/status", "actionitems/status", "canaries/status"]
  verbs: ["get", "patch"]
# Canary finalizers subresource: objects the operator creates for a Canary (its ReplicaSets, the
# -primary/-canary Services) carry an ownerReference with blockOwnerDeletion, which the
# OwnerReferencesPermissionEnforcement admission plugin allows only with `update` on the owner's
# finalizers.
- apiGroups: ["kaizen.dev"]
  resources: ["canaries/finalizers"]
  verbs: ["update"]
# Deployments: read the Canary's target and patch its `spec.replicas` (0 while Kaizen's ReplicaSets
# serve, N again when the Canary is deleted). Nothing else of a Deployment is written.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
# ReplicaSets: one per revision of a Canary's target (label kaizen.dev/canary), created from the
# target's pod template, scaled as the rollout moves, deleted once a revision no longer serves.
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# HorizontalPodAutoscalers: read only, to refuse one that scales a Canary's target (Kaizen keeps
# the target at 0; an HPA belongs on the Canary, through its scale subresource).
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch"]
# Services: with gatewayAPI routing the operator creates `<name>-primary` and `<name>-canary`
# Services for the HTTPRoute's backends and patches their selectors (they go with the Canary, by
# their owner reference).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# HTTPRoutes: with gatewayAPI routing the operator sets the backend weights of the route the Canary
# names. It never creates or deletes routes.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "patch"]
# Events: the operator records what it did (rollout steps, rollbacks, escalations) on the objects it
# reconciles; `patch` lets the recorder fold repeats into an event series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Name of the Lease the replicas elect their leader with (in the release namespace).
*/}}
{{- define "kaizen.leaseName" -}}
{{- include "kaizen.fullname" . }}
{{- end }}
