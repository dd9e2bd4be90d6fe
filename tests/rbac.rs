//! The Helm chart's RBAC is sufficient and least-privilege: the real operator runs as a ServiceAccount
//! that holds only what charts/kaizen renders (ClusterRoles, Role, bindings), and drives every API path
//! (Incident roll-up, ActionItem reminders through a sink whose URL is in a Secret, a Canary's
//! initialization, rollout, promotion, abort with an Incident and deletion) without a single forbidden
//! request; the same token cannot read other Secrets, list Secrets or write an ActionItem's spec.
//!
//! No helm binary is needed: `render` below understands exactly the template expressions that
//! clusterrole.yaml, role.yaml and clusterrolebinding.yaml use, and fails on any other, so a template
//! change cannot silently bypass this test.

mod common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use common::{
    Env, WAIT,
    build::{
        canary, dur, incident, item, local_ref, open_incident, pause_until_resumed, secs_from_now, set_weight, time,
    },
    client_from,
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
use serde::Deserialize;
use serde_json::{Value, json};

/// The values this test renders the chart with (everything else is the chart's default).
struct Values<'a> {
    /// `kaizen.fullname`, and so the ServiceAccount's name (serviceAccount.name is empty by default).
    fullname: &'a str,
    /// `.Release.Namespace`: the operator's own namespace, where its sink Secrets live.
    namespace: &'a str,
    /// `config.sinks[].urlSecretRef.name`.
    sink_secrets: &'a [&'a str],
    /// `config.namespaces`: empty binds the namespaced permissions cluster-wide, otherwise with a
    /// RoleBinding in each of these namespaces.
    namespaces: &'a [&'a str],
    /// `config.alertmanager.tokenSecretRef.name` with `config.alertmanager.enabled`; `None`: disabled.
    alertmanager_token: Option<&'a str>,
}

enum Token {
    Text(String),
    Action(String),
}

/// Splits a Go template into text and actions, applying `{{-` and `-}}` whitespace trimming.
fn tokens(src: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        if after.starts_with("- ") {
            text = text.trim_end();
        }
        out.push(Token::Text(text.to_string()));
        let end = after.find("}}").expect("every {{ is closed");
        let action = &after[..end];
        trim_next = action.ends_with(" -");
        out.push(Token::Action(
            action
                .trim_start_matches("- ")
                .trim_end_matches(" -")
                .trim()
                .to_string(),
        ));
        rest = &after[end + 2..];
    }
    out.push(Token::Text(
        if trim_next { rest.trim_start() } else { rest }.to_string(),
    ));
    out
}

/// Renders one of the chart's RBAC templates the way `helm template` does with `values`, for the
/// expressions those templates use today. Any other expression fails the test, naming it.
fn render(file: &Path, values: &Values) -> String {
    struct Frame {
        active: bool,
        taken: bool,
        kind: &'static str,
        /// For `range` over config.namespaces: the token the body starts after, and the index.
        range: Option<(usize, usize)>,
    }
    let src = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let tokens = tokens(&src);
    let mut stack: Vec<Frame> = Vec::new();
    let mut out = String::new();
    let mut secrets: Vec<String> = Vec::new();
    let push = |stack: &mut Vec<Frame>, active: bool, kind: &'static str| {
        stack.push(Frame {
            active,
            taken: active,
            kind,
            range: None,
        })
    };
    let ns_index = |stack: &Vec<Frame>| {
        stack
            .iter()
            .rev()
            .find_map(|f| f.range.map(|(_, i)| i))
            .expect("$i and $ns only inside the range over config.namespaces")
    };
    let mut pos = 0;
    while pos < tokens.len() {
        let token = &tokens[pos];
        pos += 1;
        let active = stack.iter().all(|f| f.active);
        let action = match token {
            Token::Text(t) => {
                if active {
                    out.push_str(t);
                }
                continue;
            }
            Token::Action(a) => a.as_str(),
        };
        let keyword = action.split_whitespace().next().unwrap_or_default();
        if !active {
            // Inside a branch not taken: only the nesting matters.
            match keyword {
                "if" | "range" | "with" => push(&mut stack, false, "skipped"),
                "end" => drop(stack.pop()),
                "else" => {
                    let parents_active = stack[..stack.len() - 1].iter().all(|f| f.active);
                    let top = stack.last_mut().unwrap();
                    if parents_active && !top.taken {
                        top.active = true;
                        top.taken = true;
                    }
                }
                _ => {}
            }
            continue;
        }
        match action {
            "if .Values.rbac.create" => push(&mut stack, true, "if"),
            "if empty .Values.config.namespaces" => push(&mut stack, values.namespaces.is_empty(), "if"),
            "else" => {
                let top = stack.last_mut().expect("else inside a block");
                top.active = false;
            }
            "end" => {
                let top = stack.last_mut().expect("end closes a block");
                match top.range {
                    // Run the body again for the next namespace.
                    Some((start, i)) if i + 1 < values.namespaces.len() => {
                        top.range = Some((start, i + 1));
                        pos = start;
                    }
                    _ => drop(stack.pop()),
                }
            }
            "range $i, $ns := .Values.config.namespaces" => {
                push(&mut stack, !values.namespaces.is_empty(), "namespaces");
                stack.last_mut().unwrap().range = Some((pos, 0));
            }
            "if $i" => {
                let i = ns_index(&stack);
                push(&mut stack, i > 0, "if")
            }
            "$ns" => out.push_str(values.namespaces[ns_index(&stack)]),
            "$secrets := list" => secrets.clear(),
            "range .Values.config.sinks" => push(&mut stack, !values.sink_secrets.is_empty(), "sinks"),
            "$secrets = append $secrets .urlSecretRef.name" => {
                assert_eq!(
                    stack.last().map(|f| f.kind),
                    Some("sinks"),
                    "append outside the sinks range"
                );
                // The range body runs once per sink: appending every sink's Secret at once is the same.
                secrets.extend(values.sink_secrets.iter().map(|s| s.to_string()));
            }
            "if .Values.config.alertmanager.enabled" => {
                push(&mut stack, values.alertmanager_token.is_some(), "alertmanager")
            }
            "$secrets = append $secrets .Values.config.alertmanager.tokenSecretRef.name" => {
                secrets.extend(values.alertmanager_token.map(str::to_string));
            }
            "with $secrets | uniq | sortAlpha" => {
                secrets.sort();
                secrets.dedup();
                push(&mut stack, !secrets.is_empty(), "secrets")
            }
            "toYaml . | nindent 6" => {
                assert_eq!(
                    stack.last().map(|f| f.kind),
                    Some("secrets"),
                    "toYaml of the Secret names"
                );
                for s in &secrets {
                    out.push_str(&format!("\n      - {s}"));
                }
            }
            // Labels are cosmetic here: `labels:` renders as null.
            "include \"kaizen.labels\" . | nindent 4" | "include \"kaizen.labels\" $ | nindent 4" => {}
            "$fullname := include \"kaizen.fullname\" ." | "$saName := include \"kaizen.serviceAccountName\" ." => {}
            "include \"kaizen.fullname\" ." | "$fullname" => out.push_str(values.fullname),
            "include \"kaizen.serviceAccountName\" ." | "$saName" => out.push_str(values.fullname),
            ".Release.Namespace" | "$.Release.Namespace" => out.push_str(values.namespace),
            other => panic!(
                "{}: the template expression {{{{ {other} }}}} is unknown to the renderer in tests/rbac.rs; \
                 teach it what Helm renders there so the chart's RBAC stays tested",
                file.display()
            ),
        }
    }
    assert!(stack.is_empty(), "{}: unclosed block", file.display());
    assert!(
        !out.contains("{{"),
        "{}: unrendered template left:\n{out}",
        file.display()
    );
    out
}

/// Every object the chart's RBAC templates render, as JSON.
fn chart_rbac(values: &Values) -> Vec<Value> {
    let dir = common::repo_root().join("charts/kaizen/templates");
    let mut objects = Vec::new();
    for file in ["clusterrole.yaml", "role.yaml", "clusterrolebinding.yaml"] {
        let yaml = render(&dir.join(file), values);
        for doc in serde_yaml::Deserializer::from_str(&yaml) {
            let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{file} renders to YAML: {e}\n{yaml}"));
            if !v.is_null() {
                objects.push(v);
            }
        }
    }
    objects
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
                .args(["", "-crds", "-watch"].map(|suffix| format!("{}{suffix}", self.fullname)))
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

#[test]
fn renderer_rejects_template_expressions_it_does_not_know() {
    let file = std::env::temp_dir().join(format!("kaizen-rbac-{}.yaml", common::free_port()));
    std::fs::write(
        &file,
        "name: {{ include \"kaizen.fullname\" . }}\nimage: {{ .Values.image.tag }}\n",
    )
    .unwrap();
    let values = Values {
        fullname: "x",
        namespace: "y",
        sink_secrets: &[],
        namespaces: &[],
        alertmanager_token: None,
    };
    let res = std::panic::catch_unwind(|| render(&file, &values));
    let _ = std::fs::remove_file(&file);
    let msg = *res.expect_err("unknown expression fails").downcast::<String>().unwrap();
    assert!(msg.contains(".Values.image.tag"), "{msg}");
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn chart_rbac_renders_the_sink_secrets_and_no_wildcards() {
    let objects = chart_rbac(&Values {
        fullname: "kaizen",
        namespace: "kaizen-system",
        sink_secrets: &["b", "a", "b"],
        namespaces: &[],
        alertmanager_token: None,
    });
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole/kaizen",
            "ClusterRole/kaizen-crds",
            "ClusterRole/kaizen-watch",
            "Role/kaizen",
            "RoleBinding/kaizen",
            "ClusterRoleBinding/kaizen",
            "ClusterRoleBinding/kaizen-crds"
        ]
    );
    let role = objects.iter().find(|o| o["kind"] == "Role").unwrap();
    let secrets = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"] == json!(["secrets"]))
        .unwrap();
    assert_eq!(secrets["resourceNames"], json!(["a", "b"]));
    assert_eq!(secrets["verbs"], json!(["get"]));
    for o in &objects {
        let text = o.to_string();
        assert!(!text.contains("\"*\""), "no wildcard in {text}");
    }
    // Without sinks, no Secret is readable at all.
    let none = chart_rbac(&Values {
        fullname: "kaizen",
        namespace: "kaizen-system",
        sink_secrets: &[],
        namespaces: &[],
        alertmanager_token: None,
    });
    let role = none.iter().find(|o| o["kind"] == "Role").unwrap();
    assert!(!role.to_string().contains("secrets"), "{role}");
    let incident_verbs = |objects: &[Value]| {
        objects.iter().find(|o| o["kind"] == "ClusterRole").unwrap()["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resources"] == json!(["incidents"]))
            .unwrap()["verbs"]
            .clone()
    };
    assert_eq!(incident_verbs(&none), json!(["get", "list", "watch", "create"]));
    // The Alertmanager receiver: its token's Secret, and patch (server-side apply) on Incidents.
    let alerts = chart_rbac(&Values {
        fullname: "kaizen",
        namespace: "kaizen-system",
        sink_secrets: &["b"],
        namespaces: &[],
        alertmanager_token: Some("am"),
    });
    assert_eq!(
        incident_verbs(&alerts),
        json!(["get", "list", "watch", "create", "patch"])
    );
    let role = alerts.iter().find(|o| o["kind"] == "Role").unwrap();
    assert_eq!(role["rules"][0]["resourceNames"], json!(["am", "b"]));
}

#[test]
fn chart_rbac_with_namespaces_binds_writes_only_there() {
    let objects = chart_rbac(&Values {
        fullname: "kaizen",
        namespace: "kaizen-system",
        sink_secrets: &[],
        namespaces: &["a", "b"],
        alertmanager_token: None,
    });
    assert_eq!(
        kinds(&objects),
        [
            "ClusterRole/kaizen",
            "ClusterRole/kaizen-crds",
            "ClusterRole/kaizen-watch",
            "Role/kaizen",
            "RoleBinding/kaizen",
            "RoleBinding/kaizen-scoped",
            "RoleBinding/kaizen-scoped",
            "ClusterRoleBinding/kaizen-watch",
            "ClusterRoleBinding/kaizen-crds"
        ]
    );
    let bound: Vec<(&str, &str)> = objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" && o["roleRef"]["kind"] == "ClusterRole")
        .map(|o| {
            (
                o["metadata"]["namespace"].as_str().unwrap(),
                o["roleRef"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(bound, [("a", "kaizen"), ("b", "kaizen")]);
    let watch = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "kaizen-watch")
        .unwrap();
    for rule in watch["rules"].as_array().unwrap() {
        assert_eq!(rule["verbs"], json!(["list", "watch"]), "read-only: {rule}");
    }
}

/// The whole operator, running with only the chart's RBAC bound cluster-wide (config.namespaces
/// empty), works without a forbidden request; the same credentials are refused what the chart does
/// not grant.
#[tokio::test]
async fn chart_rbac_bound_cluster_wide_is_sufficient_and_grants_nothing_more() {
    operator_runs_with_chart_rbac("rbac", false).await;
}

/// The same with config.namespaces set: the namespaced permissions are bound only in the watched
/// namespace, and nothing can be written anywhere else.
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
    });
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
    let what = "the chart's bindings to take effect: get CRD canaries.kaizen.dev, list Canaries in all \
                    namespaces, get Secret hooks";
    wait_for(WAIT, what, || async {
        let crds: Api<CustomResourceDefinition> = Api::all(sa.clone());
        crds.get("canaries.kaizen.dev").await.ok()?;
        let canaries: Api<Canary> = Api::all(sa.clone());
        canaries.list(&Default::default()).await.ok()?;
        sa_secrets.get("hooks").await.ok()
    })
    .await;

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
        .own_namespace(&ns);
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
        (env.replicas("web-primary").await == (Some(2), 2) && env.replicas("web").await.0 == Some(0)).then_some(())
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
    assert_eq!(env.image("web-primary").await, "example.com/web:v2");

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

    env.delete_canary("web").await;
    assert_eq!(env.image("web").await, "example.com/web:v2");
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
