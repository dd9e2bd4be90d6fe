//! The Helm chart's RBAC is sufficient and least-privilege: the real operator runs as a ServiceAccount
//! that holds only what `helm template` renders from charts/kaizen (ClusterRoles, Roles, bindings), and
//! drives every API path (Incident roll-up, ActionItem reminders through a sink whose URL is in a
//! Secret, a Canary's initialization, rollout, promotion, abort with an Incident and deletion) without a
//! single forbidden request; the same token cannot read other Secrets, list Secrets or write an
//! ActionItem's spec. With config.namespaces set, nothing namespaced is granted cluster-wide: the
//! operator works with Roles in the watched namespaces only.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{
    Env, WAIT,
    build::{
        canary, dur, incident, item, local_ref, open_incident, pause_until_resumed, secs_from_now, set_weight, time,
    },
    client_from, helm,
    servers::Receiver,
    wait_for,
};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        authentication::v1::TokenRequest,
        core::v1::{Secret, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kaizen::api::{
    ActionItem, Canary, Incident,
    action_item::ActionItemSpec,
    canary::{CanaryPhase, CanarySpec},
    incident::{IncidentPhase, IncidentSpec, Severity},
};
use kube::{
    Api,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// The values this test renders the chart with (everything else is the chart's default).
struct Values<'a> {
    /// The release name; it contains "kaizen", so it is also `kaizen.fullname` and the ServiceAccount's
    /// name (serviceAccount.name is empty by default).
    fullname: &'a str,
    /// `--namespace`: the release namespace, the operator's own, where its sink Secrets live.
    namespace: &'a str,
    /// `config.sinks[].urlSecretRef.name`.
    sink_secrets: &'a [&'a str],
    /// `config.namespaces`: empty binds the namespaced permissions cluster-wide, otherwise with a Role
    /// in each of these namespaces.
    namespaces: &'a [&'a str],
    /// `config.alertmanager.tokenSecretRef.name` with `config.alertmanager.enabled`; `None`: disabled.
    alertmanager_token: Option<&'a str>,
}

const RBAC_KINDS: [&str; 4] = ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

/// Every RBAC object `helm template` renders for `values`, as JSON, in helm's order.
async fn chart_rbac(values: &Values<'_>) -> Vec<Value> {
    assert!(values.fullname.contains("kaizen"), "the release name is the fullname");
    let sinks: Vec<Value> = values
        .sink_secrets
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"name": format!("sink-{i}"), "format": "json", "urlSecretRef": {"name": s, "key": "url"}}))
        .collect();
    let alertmanager = match values.alertmanager_token {
        Some(name) => json!({"enabled": true, "tokenSecretRef": {"name": name, "key": "token"}}),
        None => json!({"enabled": false}),
    };
    let rendered = helm::template(
        values.fullname,
        values.namespace,
        &json!({"config": {
            "sinks": sinks,
            "namespaces": values.namespaces,
            "alertmanager": alertmanager,
        }}),
    )
    .await;
    rendered
        .into_iter()
        .filter(|o| RBAC_KINDS.iter().any(|k| o["kind"] == *k))
        .collect()
}

/// Deletes the cluster-scoped objects this test created when it ends, passed or failed.
struct ClusterScoped {
    fullname: String,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        for kind in ["clusterrolebinding", "clusterrole"] {
            let _ = std::process::Command::new(common::kubectl())
                .args(["delete", kind, "--ignore-not-found", "--wait=false"])
                .args(["", "-crds"].map(|suffix| format!("{}{suffix}", self.fullname)))
                .env("KUBECONFIG", common::kubeconfig())
                .output();
        }
    }
}

/// A kubeconfig for the admin kubeconfig's cluster that authenticates with `token`.
fn token_kubeconfig(token: &str) -> PathBuf {
    let admin = kube::config::Kubeconfig::read_from(common::kubeconfig()).unwrap();
    let current = admin.current_context.clone().unwrap();
    let context = admin.contexts.iter().find(|c| c.name == current).unwrap();
    let cluster_name = context.context.as_ref().unwrap().cluster.clone();
    let cluster = admin.clusters.iter().find(|c| c.name == cluster_name).unwrap();
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [serde_json::to_value(cluster).unwrap()],
        "users": [{"name": "kaizen-sa", "user": {"token": token}}],
        "contexts": [{"name": "kaizen-sa", "context": {"cluster": cluster_name, "user": "kaizen-sa"}}],
        "current-context": "kaizen-sa",
    });
    let path = std::env::temp_dir().join(format!("kaizen-sa-{}.kubeconfig", common::free_port()));
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    path
}

/// The operator's refused requests: log lines that mention Forbidden or HTTP 403.
fn refusals(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.to_lowercase().contains("forbidden") || l.contains("code: 403"))
        .collect()
}

/// When the test fails, prints what the operator was refused: usually the missing permission.
struct PrintRefusals(PathBuf);

impl Drop for PrintRefusals {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            eprintln!(
                "---- requests the operator was refused ----\n{}",
                refusals(&log).join("\n")
            );
        }
    }
}

fn assert_forbidden<T: std::fmt::Debug>(res: kube::Result<T>, what: &str) {
    match res {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// The rule of `role` for `resources`, whose `resourceNames` are `names` (None: not limited by name).
fn rule<'a>(role: &'a Value, resources: &str, names: Option<&Value>) -> Option<&'a Value> {
    role["rules"].as_array()?.iter().find(|r| {
        r["resources"] == json!([resources])
            && names.map_or(r.get("resourceNames").is_none(), |n| r["resourceNames"] == *n)
    })
}

#[tokio::test]
async fn chart_rbac_renders_the_sink_secrets_the_lease_and_no_wildcards() {
    let objects = chart_rbac(&Values {
        fullname: "kaizen",
        namespace: "kaizen-system",
        sink_secrets: &["b", "a", "b"],
        namespaces: &[],
        alertmanager_token: None,
    })
    .await;
    assert_eq!(
        helm::kinds(&objects),
        [
            "ClusterRole/kaizen",
            "ClusterRole/kaizen-crds",
            "ClusterRoleBinding/kaizen",
            "ClusterRoleBinding/kaizen-crds",
            "Role/kaizen-system/kaizen",
            "RoleBinding/kaizen-system/kaizen",
        ]
    );
    let role = objects.iter().find(|o| o["kind"] == "Role").unwrap();
    let secrets = rule(role, "secrets", Some(&json!(["a", "b"]))).unwrap_or_else(|| panic!("{role}"));
    assert_eq!(secrets["verbs"], json!(["get"]));
    // The Lease: created by name in the body (so not limited by name), everything else on this
    // release's Lease only.
    let create = rule(role, "leases", None).unwrap_or_else(|| panic!("{role}"));
    assert_eq!(create["verbs"], json!(["create"]));
    assert_eq!(create["apiGroups"], json!(["coordination.k8s.io"]));
    let own = rule(role, "leases", Some(&json!(["kaizen"]))).unwrap_or_else(|| panic!("{role}"));
    assert_eq!(own["verbs"], json!(["get", "list", "watch", "update", "patch"]));
    for o in &objects {
        let text = o.to_string();
        assert!(!text.contains("\"*\""), "no wildcard in {text}");
    }
    // Without sinks no Secret is readable at all; without leader election no Lease is writable.
    let file_values = json!({"leaderElection": {"enabled": false}, "replicaCount": 1});
    let none = helm::template("kaizen", "kaizen-system", &file_values).await;
    let role = none.iter().find(|o| o["kind"] == "Role").unwrap();
    assert_eq!(role["rules"], json!([]), "{role}");
    let incident_verbs = |objects: &[Value]| {
        objects.iter().find(|o| o["kind"] == "ClusterRole").unwrap()["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"] == json!(["incidents"]))
            .unwrap()["verbs"]
            .clone()
    };
    assert_eq!(incident_verbs(&objects), json!(["get", "list", "watch", "create"]));
    // The Alertmanager receiver: its token's Secret, and patch (server-side apply) on Incidents.
    let alerts = chart_rbac(&Values {
        fullname: "kaizen",
        namespace: "kaizen-system",
        sink_secrets: &["b"],
        namespaces: &[],
        alertmanager_token: Some("am"),
    })
    .await;
    assert_eq!(
        incident_verbs(&alerts),
        json!(["get", "list", "watch", "create", "patch"])
    );
    let role = alerts.iter().find(|o| o["kind"] == "Role").unwrap();
    let secrets = rule(role, "secrets", Some(&json!(["am", "b"]))).unwrap_or_else(|| panic!("{role}"));
    assert_eq!(secrets["verbs"], json!(["get"]));
}

/// Kaizen's own kinds and every namespaced resource the operator touches.
const NAMESPACED: [&str; 13] = [
    "incidents",
    "actionitems",
    "canaries",
    "incidents/status",
    "actionitems/status",
    "canaries/status",
    "canaries/finalizers",
    "deployments",
    "replicasets",
    "horizontalpodautoscalers",
    "services",
    "httproutes",
    "events",
];

#[tokio::test]
async fn chart_rbac_with_namespaces_grants_nothing_namespaced_cluster_wide() {
    let objects = chart_rbac(&Values {
        fullname: "kaizen",
        namespace: "kaizen-system",
        sink_secrets: &[],
        namespaces: &["a", "b"],
        alertmanager_token: None,
    })
    .await;
    assert_eq!(
        helm::kinds(&objects),
        [
            "ClusterRole/kaizen-crds",
            "ClusterRoleBinding/kaizen-crds",
            "Role/kaizen-system/kaizen",
            "Role/a/kaizen-scoped",
            "Role/b/kaizen-scoped",
            "RoleBinding/kaizen-system/kaizen",
            "RoleBinding/a/kaizen-scoped",
            "RoleBinding/b/kaizen-scoped",
        ]
    );
    // Cluster-scoped: only the reads of Kaizen's three CRDs, by name. Nothing on incidents,
    // actionitems, canaries (or their status), Deployments, Services, Events or HTTPRoutes.
    for role in helm::of_kind(&objects, "ClusterRole") {
        for r in role["rules"].as_array().unwrap() {
            assert_eq!(r["apiGroups"], json!(["apiextensions.k8s.io"]), "cluster-wide: {r}");
            assert_eq!(
                r["resources"],
                json!(["customresourcedefinitions"]),
                "cluster-wide: {r}"
            );
            assert_eq!(r["verbs"], json!(["get", "list", "watch"]), "cluster-wide: {r}");
            assert!(
                r["resourceNames"].as_array().is_some_and(|n| n.len() == 3),
                "by name: {r}"
            );
            for kind in NAMESPACED {
                assert!(
                    !r.to_string().contains(&format!("\"{kind}\"")),
                    "{kind} cluster-wide: {r}"
                );
            }
        }
    }
    for binding in helm::of_kind(&objects, "ClusterRoleBinding") {
        assert_eq!(binding["roleRef"]["name"], "kaizen-crds", "{binding}");
    }
    // Each watched namespace: a Role with every namespaced rule, list and watch included, bound to the
    // operator's ServiceAccount in its own namespace.
    for ns in ["a", "b"] {
        let role = objects
            .iter()
            .find(|o| o["kind"] == "Role" && o["metadata"]["namespace"] == ns)
            .unwrap();
        for kind in [
            "incidents",
            "actionitems",
            "canaries",
            "deployments",
            "replicasets",
            "horizontalpodautoscalers",
            "services",
            "httproutes",
        ] {
            let r = rule(role, kind, None).unwrap_or_else(|| panic!("{kind} in {role}"));
            for verb in ["list", "watch"] {
                assert!(
                    r["verbs"].as_array().unwrap().contains(&json!(verb)),
                    "{verb} {kind} in {ns}: {r}"
                );
            }
        }
        let binding = objects
            .iter()
            .find(|o| o["kind"] == "RoleBinding" && o["metadata"]["namespace"] == ns)
            .unwrap();
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kaizen-scoped"})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "kaizen", "namespace": "kaizen-system"}])
        );
    }
    // The same rules as the cluster-wide ClusterRole, so scoping changes where they hold, not what.
    let all = chart_rbac(&Values {
        fullname: "kaizen",
        namespace: "kaizen-system",
        sink_secrets: &[],
        namespaces: &[],
        alertmanager_token: None,
    })
    .await;
    let cluster = all.iter().find(|o| o["metadata"]["name"] == "kaizen").unwrap();
    let scoped = objects.iter().find(|o| o["metadata"]["namespace"] == "a").unwrap();
    assert_eq!(cluster["rules"], scoped["rules"]);
}

/// The whole operator, running with only the chart's RBAC bound cluster-wide (config.namespaces
/// empty), works without a forbidden request; the same credentials are refused what the chart does
/// not grant.
#[tokio::test]
async fn chart_rbac_bound_cluster_wide_is_sufficient_and_grants_nothing_more() {
    operator_runs_with_chart_rbac("rbac", false).await;
}

/// The same with config.namespaces set: every namespaced permission (list and watch included) is a Role
/// in the watched namespace, nothing namespaced is granted cluster-wide, and nothing can be read or
/// written anywhere else. Needs the operator to watch each configured namespace on its own (issue 10,
/// part 2): an operator whose caches list cluster-wide is refused here, and this test says so.
#[tokio::test]
async fn chart_rbac_bound_to_watched_namespaces_is_sufficient_and_grants_nothing_more() {
    operator_runs_with_chart_rbac("rbac-ns", true).await;
}

async fn operator_runs_with_chart_rbac(prefix: &str, scoped: bool) {
    let mut env = Env::new(prefix).await;
    let ns = env.ns.clone();
    let fullname = format!("kaizen-{ns}");
    let _cluster_scoped = ClusterScoped {
        fullname: fullname.clone(),
    };

    // The chart's RBAC, rendered for this namespace as the release namespace.
    let watched = [ns.as_str()];
    let rendered = chart_rbac(&Values {
        fullname: &fullname,
        namespace: &ns,
        sink_secrets: &["hooks"],
        namespaces: if scoped { &watched } else { &[] },
        alertmanager_token: Some("am-token"),
    })
    .await;
    let sas: Api<ServiceAccount> = env.api();
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(fullname.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create(&PostParams::default(), &account).await.unwrap();
    let manifest: String = rendered
        .iter()
        .map(|o| format!("---\n{}", serde_yaml::to_string(o).unwrap()))
        .collect();
    let (ok, _, err) = common::run_kubectl_stdin(&["create", "-f", "-"], &manifest).await;
    assert!(ok, "the chart's RBAC applies: {err}\n{manifest}");

    // The sink's URL, and a Secret the sinks do not name.
    let receiver = Receiver::start().await;
    env.secret("hooks", &[("url", &receiver.url("/json"))]).await;
    env.secret("other", &[("password", "hunter2")]).await;
    env.secret("am-token", &[("token", "am-secret")]).await;

    // A token for the ServiceAccount, and a kubeconfig that uses it.
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = sas
        .create_token_request(&fullname, &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let kubeconfig = token_kubeconfig(&token);
    let sa = client_from(&kubeconfig).await;

    // RBAC is enforced from the authorizer's cache: wait until the bindings are in effect, so the
    // operator's first requests are judged by them.
    let sa_secrets: Api<Secret> = Api::namespaced(sa.clone(), &ns);
    let what = "the chart's bindings to take effect: get CRD canaries.kaizen.dev, list Canaries (in all \
                    namespaces, or in the watched one when scoped), get Secret hooks";
    wait_for(WAIT, what, || async {
        let crds: Api<CustomResourceDefinition> = Api::all(sa.clone());
        crds.get("canaries.kaizen.dev").await.ok()?;
        let canaries: Api<Canary> = if scoped {
            Api::namespaced(sa.clone(), &ns)
        } else {
            Api::all(sa.clone())
        };
        canaries.list(&Default::default()).await.ok()?;
        sa_secrets.get("hooks").await.ok()
    })
    .await;
    if scoped {
        // Nothing namespaced is listable cluster-wide: the operator must watch the namespace itself.
        assert_forbidden(
            Api::<Canary>::all(sa.clone()).list(&Default::default()).await,
            "list Canaries in all namespaces",
        );
        assert_forbidden(
            Api::<Incident>::all(sa.clone()).list(&Default::default()).await,
            "list Incidents in all namespaces",
        );
        assert_forbidden(
            Api::<Deployment>::all(sa.clone()).list(&Default::default()).await,
            "list Deployments in all namespaces",
        );
    }

    // Least privilege: what the chart does not grant is refused.
    assert_forbidden(sa_secrets.get("other").await, "get a Secret no sink names");
    assert_forbidden(
        sa_secrets.list(&Default::default()).await,
        "list Secrets in the namespace",
    );
    assert_forbidden(
        Api::<Secret>::all(sa.clone()).list(&Default::default()).await,
        "list Secrets cluster-wide",
    );

    let launch = env
        .launch(
            "reminderInterval: 1h\nsinks:\n- {name: hook, format: json, urlSecretRef: {name: hooks, key: url}}\n\
             alertmanager: {enabled: true, tokenSecretRef: {name: am-token, key: token}}\n",
        )
        .kubeconfig(&kubeconfig)
        .own_namespace(&ns)
        // As the chart runs it: electing a leader through the release's Lease.
        .args(&["--leader-election", "--lease-name", &fullname]);
    let _refusals = PrintRefusals(env.run_operator(launch).await.log.clone());

    // Incident and ActionItems: roll-up, deadlines, a reminder through the sink, Events.
    let (incidents, items) = (&env.incidents, &env.items);
    let spec = IncidentSpec {
        resolved_at: Some(time("2026-01-01T00:00:00Z")),
        ..incident("Outage", Severity::Sev2)
    };
    env.incident("outage", spec).await;
    let spec = ActionItemSpec {
        due_in: Some(dur("7d")),
        incident_ref: Some(local_ref("outage")),
        ..item("Fix it", "alice")
    };
    env.action_item("fix", spec).await;
    let spec = ActionItemSpec {
        due_at: Some(secs_from_now(2)),
        incident_ref: Some(local_ref("outage")),
        ..item("Add an alert", "bob")
    };
    env.action_item("remind", spec).await;
    let reminder = wait_for(Duration::from_secs(30), "a reminder delivered to the sink", || async {
        receiver.received().into_iter().find(|m| m.path == "/json")
    })
    .await;
    assert_eq!(reminder.body["kind"], "Reminder", "{:?}", reminder.body);
    let rolled = wait_for(WAIT, "the incident to roll up both items, one overdue", || async {
        let s = incidents.get("outage").await.ok()?.status?;
        let counts = s.action_items.as_ref()?;
        (counts.total == 2 && counts.overdue == 1).then_some(s)
    })
    .await;
    assert_eq!(rolled.phase, Some(IncidentPhase::Learning));
    wait_for(WAIT, "Overdue and ReminderSent events", || async {
        let reasons = env.event_reasons("remind").await;
        (reasons.iter().any(|r| r == "Overdue") && reasons.iter().any(|r| r == "ReminderSent")).then_some(())
    })
    .await;
    wait_for(WAIT, "the item on time to be Ready", || async {
        let s = items.get("fix").await.ok()?.status?;
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;

    // Canary: initialization, a rollout promoted, an abort that opens an Incident, deletion.
    env.target("web", "v1", 2).await;
    let spec = CanarySpec {
        on_rollback: open_incident(Severity::Sev3),
        ..canary("web", vec![set_weight(50), pause_until_resumed()])
    };
    env.canary("web", spec).await;
    let idle = env
        .canary_where("web", "Idle", |s| s.phase == Some(CanaryPhase::Idle))
        .await;
    let v1 = idle.stable_revision.clone().unwrap();
    wait_for(WAIT, "primary at 2 replicas, target at 0", || async {
        (env.stable("web").await == (Some(2), 2) && env.replicas("web").await.0 == Some(0)).then_some(())
    })
    .await;

    env.set_image("web", "v2").await;
    env.canary_where("web", "v2 paused after its weight step", |s| {
        s.phase == Some(CanaryPhase::Paused) && s.canary_revision.as_ref().is_some_and(|r| *r != v1)
    })
    .await;
    env.annotate_canary("web", "kaizen.dev/resume", "r1").await;
    env.canary_where("web", "v2 promoted", |s| s.phase == Some(CanaryPhase::Succeeded))
        .await;
    assert_eq!(env.stable_image("web").await, "example.com/web:v2");

    env.set_image("web", "v3").await;
    env.canary_where("web", "v3 paused after its weight step", |s| {
        s.phase == Some(CanaryPhase::Paused)
    })
    .await;
    env.annotate_canary("web", "kaizen.dev/abort", "a1").await;
    let rb = env
        .canary_where("web", "v3 rolled back", |s| {
            s.phase == Some(CanaryPhase::RolledBack) && s.incident_ref.is_some()
        })
        .await;
    let opened = incidents.get(&rb.incident_ref.unwrap().name).await.unwrap();
    assert!(opened.spec.title.contains("web"), "{}", opened.spec.title);
    // Events are published after the status write that a watcher sees first.
    let want = [
        "Initialized",
        "RolloutStarted",
        "Promoted",
        "RolledBack",
        "IncidentOpened",
    ];
    wait_for(WAIT, &format!("Canary events {want:?}"), || async {
        let reasons = env.event_reasons("web").await;
        want.iter().all(|w| reasons.iter().any(|r| r == w)).then_some(())
    })
    .await;

    // The hand-back scales the target up with its own template (v3, as declared): Kaizen writes
    // nothing but its replicas.
    env.delete_canary("web").await;
    assert_eq!(env.image("web").await, "example.com/web:v3");
    env.wait_replicas("web", (Some(2), 2)).await;

    // The Alertmanager receiver: reads its token Secret, opens an Incident and resolves it.
    let am = format!("http://127.0.0.1:{}/alertmanager", env.op().port);
    for status in ["firing", "resolved"] {
        let ends = if status == "firing" {
            "0001-01-01T00:00:00Z"
        } else {
            "2026-03-01T10:05:00Z"
        };
        let n = common::alerting::notification(
            "{}:{a=\"rbac\"}",
            status,
            &[("f1", status, "2026-03-01T10:00:00Z", ends)],
        );
        let resp = common::http()
            .post(&am)
            .bearer_auth("am-secret")
            .body(n.to_string())
            .send()
            .await
            .unwrap();
        let code = resp.status().as_u16();
        assert_eq!(code, 200, "{}", resp.text().await.unwrap());
    }
    let alerted = incidents
        .list(&kube::api::ListParams::default().labels("kaizen.dev/alert-group"))
        .await
        .unwrap()
        .items;
    assert_eq!(alerted.len(), 1);
    assert!(alerted[0].spec.mitigated_at.is_some());

    // The operator's spec is never its own to write: an ActionItem's spec cannot be patched, and
    // nothing it did was refused.
    let sa_items: Api<ActionItem> = Api::namespaced(sa.clone(), &ns);
    assert_forbidden(
        sa_items
            .patch(
                "fix",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"title": "changed"}})),
            )
            .await,
        "patch an ActionItem's spec",
    );
    assert_forbidden(
        Api::<Incident>::namespaced(sa.clone(), &ns)
            .delete("outage", &Default::default())
            .await,
        "delete an Incident",
    );
    if scoped {
        // Writes are bound only in the watched namespace ("default" is not one of them).
        assert_forbidden(
            Api::<Deployment>::namespaced(sa.clone(), "default")
                .delete("web", &Default::default())
                .await,
            "delete a Deployment outside the watched namespaces",
        );
        assert_forbidden(
            Api::<Incident>::namespaced(sa.clone(), "default").get("outage").await,
            "get an Incident outside the watched namespaces",
        );
    }
    // kaizen_reconcile_errors_total{error="api"} is not asserted: it also counts optimistic-concurrency
    // conflicts (HTTP 409), which are retried, e.g. when the operator hands back a Deployment that just
    // changed. The log names every refused request, whatever its category.
    let logs = env.op().logs();
    let refused = refusals(&logs);
    assert!(refused.is_empty(), "the operator was refused:\n{}", refused.join("\n"));
    let _ = std::fs::remove_file(&kubeconfig);
}
