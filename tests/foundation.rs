//! The foundation against the real local control plane: CRDs, admission-time validation, the examples,
//! and the `kaizen run` skeleton (conditions, readiness, idleness, malformed objects, SIGTERM).

mod common;

use std::time::Duration;

use common::{
    Env, Launch,
    apiserver::Apiserver,
    build::{incident, item, local_ref, time},
    condition, run_kubectl, wait_for,
};
use kaizen::api::{
    ActionItem, Canary, Incident,
    action_item::ActionItemSpec,
    incident::{IncidentSpec, Severity},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams, WatchParams},
};
use serde_json::json;

#[tokio::test]
async fn committed_crds_match_the_generated_ones() {
    let committed = std::fs::read_to_string(common::repo_root().join("crds/kaizen.dev.yaml")).unwrap();
    assert_eq!(
        committed,
        kaizen::api::crds_yaml().unwrap(),
        "crds/ is stale: run `make crds`"
    );
}

#[tokio::test]
async fn crds_install_and_become_established() {
    let client = common::client().await;
    let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client);
    for name in ["incidents.kaizen.dev", "actionitems.kaizen.dev", "canaries.kaizen.dev"] {
        let crd = api.get(name).await.unwrap();
        let established = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            established
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"),
            "{name}"
        );
        assert_eq!(crd.spec.names.categories, Some(vec!["kaizen".to_string()]), "{name}");
    }
}

#[tokio::test]
async fn valid_objects_of_each_kind_round_trip() {
    let env = Env::new("roundtrip").await;
    let ns = &env.ns;
    // Spelt as JSON on purpose: a typed struct would send the defaults itself, and this test checks
    // that the apiserver fills in what a manifest leaves out.
    let inc: Incident = serde_json::from_value(json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "Incident", "metadata": {"name": "db-outage"},
        "spec": {"title": "DB outage", "severity": "SEV1", "startedAt": "2026-01-01T00:00:00Z",
                 "detectedAt": "2026-01-01T00:04:00Z", "impact": {"usersAffected": 1200}}
    }))
    .unwrap();
    let ai: ActionItem = serde_json::from_value(json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "ActionItem", "metadata": {"name": "add-alert"},
        "spec": {"title": "Add an alert", "owner": "sre", "dueIn": "1w2d", "incidentRef": {"name": "db-outage"}}
    }))
    .unwrap();
    let canary: Canary = serde_json::from_value(json!({
        "apiVersion": "kaizen.dev/v1alpha1", "kind": "Canary", "metadata": {"name": "web"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "web"}, "steps": [{"setWeight": 10}, {"pause": {}}]}
    }))
    .unwrap();
    let (incidents, items, canaries) = (&env.incidents, &env.items, &env.canaries);
    let back = incidents.create(&PostParams::default(), &inc).await.unwrap();
    assert_eq!(back.spec, inc.spec);
    let back = items.create(&PostParams::default(), &ai).await.unwrap();
    // Defaults are applied by the apiserver from the schema.
    assert_eq!(back.spec.priority, kaizen::api::action_item::Priority::P2);
    assert_eq!(back.spec.state, kaizen::api::action_item::ActionItemState::Open);
    assert_eq!(back.spec.due_in.unwrap().to_string(), "1w2d");
    let back = canaries.create(&PostParams::default(), &canary).await.unwrap();
    assert_eq!(back.spec.steps, canary.spec.steps);
    let (ok, out, err) = run_kubectl(&["get", "kaizen", "-n", ns, "-o", "name"]).await;
    assert!(ok, "{err}");
    for name in [
        "incident.kaizen.dev/db-outage",
        "actionitem.kaizen.dev/add-alert",
        "canary.kaizen.dev/web",
    ] {
        assert!(out.contains(name), "`kubectl get kaizen` lists {name}: {out}");
    }
}

#[tokio::test]
async fn every_example_is_accepted() {
    let env = Env::new("examples").await;
    let ns = &env.ns;
    let files = common::yaml_files(&common::repo_root().join("examples"));
    assert!(files.len() >= 3, "examples/ holds the manifests users copy");
    for file in files {
        let (ok, _, err) = run_kubectl(&["apply", "-n", ns, "-f", file.to_str().unwrap()]).await;
        assert!(ok, "{} was rejected: {err}", file.display());
    }
}

#[tokio::test]
async fn every_invalid_example_is_rejected_with_its_message() {
    let env = Env::new("invalid").await;
    let ns = &env.ns;
    let files = common::yaml_files(&common::repo_root().join("examples/invalid"));
    assert!(
        files.len() >= 20,
        "one invalid manifest per validation rule, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let expect = common::expected_error(file);
        let (ok, _, err) = run_kubectl(&["create", "-n", ns, "-f", file.to_str().unwrap()]).await;
        if ok {
            failures.push(format!(
                "{}: accepted, expected rejection with {expect:?}",
                file.display()
            ));
        } else if !err.contains(&expect) {
            failures.push(format!("{}: rejected, but without {expect:?}:\n{err}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn operator_reports_kstatus_conditions_and_heals_a_missing_reference() {
    let env = Env::start("conditions", "").await;
    let (items, incidents) = (&env.items, &env.incidents);
    env.action_item(
        "fix-it",
        ActionItemSpec {
            incident_ref: Some(local_ref("outage")),
            ..item("Fix it", "alice")
        },
    )
    .await;

    let stalled = wait_for(Duration::from_secs(20), "fix-it to be Stalled", || async {
        let s = items.get("fix-it").await.ok()?.status?;
        let c = condition(&s.conditions, "Stalled")?.clone();
        (c.status == "True").then_some((s, c))
    })
    .await;
    assert_eq!(stalled.1.reason, "IncidentNotFound");
    assert!(stalled.1.message.contains("\"outage\""), "{}", stalled.1.message);
    assert_eq!(stalled.0.observed_generation, Some(1));
    assert_eq!(condition(&stalled.0.conditions, "Ready").unwrap().status, "False");

    env.incident(
        "outage",
        IncidentSpec {
            resolved_at: Some(time("2026-01-01T00:00:00Z")),
            ..incident("Outage", Severity::Sev2)
        },
    )
    .await;
    let healed = wait_for(
        Duration::from_secs(20),
        "fix-it to heal once the incident exists",
        || async {
            let s = items.get("fix-it").await.ok()?.status?;
            let ready = condition(&s.conditions, "Ready")?;
            (ready.status == "True").then_some(s)
        },
    )
    .await;
    // kstatus: Stalled and Reconciling are abnormal-true; healed, they are gone (absent means False).
    assert!(condition(&healed.conditions, "Stalled").is_none_or(|c| c.status == "False"));
    assert!(condition(&healed.conditions, "Reconciling").is_none_or(|c| c.status == "False"));
    assert!(
        condition(&healed.conditions, "Stalled").is_none(),
        "the Stalled condition is removed"
    );
    assert!(healed.conditions.iter().all(|c| c.observed_generation == Some(1)));

    let rolled = wait_for(Duration::from_secs(20), "the incident to count its item", || async {
        let s = incidents.get("outage").await.ok()?.status?;
        (s.action_items.as_ref()?.total == 1).then_some(s)
    })
    .await;
    assert_eq!(rolled.phase, Some(kaizen::api::incident::IncidentPhase::Learning));
}

/// Every watch streams its first list where the apiserver can (WatchList, on by default from v1.34)
/// and lists it where the apiserver refuses (v1.33 and earlier, or the gate off): on both, the
/// operator finds the objects there at its start and those made after. Run against a second
/// apiserver of the cluster started with the gate on, then off, whose own request counts say which
/// way the operator's ActionItem watch got its list.
#[tokio::test]
async fn watches_stream_their_first_list_and_list_where_the_apiserver_refuses() {
    for (gate, streams) in [("WatchList=true", true), ("WatchList=false", false)] {
        let apiserver = Apiserver::beside_the_cluster(&[&format!("--feature-gates={gate}")]).await;
        // What the apiserver itself says of a streaming list, before the operator asks.
        let asked = Api::<ActionItem>::all(apiserver.client.clone())
            .watch(
                &WatchParams::streaming_lists()
                    .labels("kaizen.dev/no-such-label=1")
                    .timeout(1),
                "0",
            )
            .await;
        match (&asked, streams) {
            (Ok(_), true) => {}
            (Err(kube::Error::Api(status)), false) => {
                assert_eq!(status.code, 422, "{gate}: {status:?}");
                assert!(
                    status.message.contains("sendInitialEvents"),
                    "{gate}: {}",
                    status.message
                );
            }
            (Ok(_), false) => panic!("{gate}: the apiserver streams a list"),
            (Err(e), _) => panic!("{gate}: the apiserver refuses a streaming list: {e}"),
        }
        drop(asked);

        let mut env = Env::new("lists").await;
        env.action_item("before", item("There at the start", "alice")).await;
        let launch = env.launch("").kubeconfig(&apiserver.kubeconfig);
        env.run_operator(launch).await;
        env.action_item("after", item("Made after the start", "bob")).await;
        for name in ["before", "after"] {
            wait_for(Duration::from_secs(30), &format!("{gate}: {name} Ready"), || async {
                let s = env.items.get(name).await.ok()?.status?;
                (condition(&s.conditions, "Ready")?.status == "True").then_some(())
            })
            .await;
        }

        let actionitems = "resource=\"actionitems\"";
        let lists = apiserver
            .metric_sum("apiserver_request_total", &["verb=\"LIST\"", actionitems])
            .await;
        // A watch is counted in `apiserver_request_total` only once it ends: the open ones are here.
        let watches = apiserver
            .metric_sum("apiserver_longrunning_requests", &["verb=\"WATCH\"", actionitems])
            .await;
        let refusals = env.op().logs().matches("refuses streaming lists").count();
        eprintln!(
            "FIGURE {gate}: ActionItem lists {}, open watches {}, refusals logged {refusals}",
            lists as u64, watches as u64
        );
        if streams {
            assert_eq!(lists, 0.0, "{gate}: the first list is streamed, never listed");
            assert_eq!(refusals, 0, "{gate}");
        } else {
            assert!(lists >= 1.0, "{gate}: the first list is listed");
            assert_eq!(refusals, 1, "{gate}: one line says what the apiserver refused");
        }
        // Either way the operator then watches ActionItems through this apiserver.
        assert!(watches >= 1.0, "{gate}: the operator's ActionItem watch is open");
    }
}

#[tokio::test]
async fn idle_operator_makes_no_writes_after_convergence() {
    let mut env = Env::new("idle").await;
    let ns = &env.ns;
    for file in ["incident.yaml", "action-items.yaml", "canary.yaml"] {
        let path = common::repo_root().join("examples").join(file);
        let (ok, _, err) = run_kubectl(&["apply", "-n", ns, "-f", path.to_str().unwrap()]).await;
        assert!(ok, "{err}");
    }
    // Scoped to this namespace (as every Env's operator is), so other tests' objects do not count as writes.
    env.start_operator("").await;
    let (op, incidents, items, canaries) = (env.op(), &env.incidents, &env.items, &env.canaries);
    // Converged: every object's status describes its generation.
    let versions = || async {
        let mut v = Vec::new();
        for i in incidents.list(&ListParams::default()).await.ok()? {
            (i.status.as_ref()?.observed_generation == i.metadata.generation).then_some(())?;
            v.push(i.resource_version()?);
        }
        for i in items.list(&ListParams::default()).await.ok()? {
            (i.status.as_ref()?.observed_generation == i.metadata.generation).then_some(())?;
            v.push(i.resource_version()?);
        }
        for c in canaries.list(&ListParams::default()).await.ok()? {
            (c.status.as_ref()?.observed_generation == c.metadata.generation).then_some(())?;
            v.push(c.resource_version()?);
        }
        Some(v)
    };
    // Roll-ups settle after items get their phases; take the versions once two reads agree.
    let mut before = wait_for(Duration::from_secs(30), "all objects to converge", versions).await;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let again = versions().await.expect("still converged");
        if again == before {
            break;
        }
        before = again;
    }
    let writes_before = op.metric_sum("kaizen_status_writes_total").await;
    // The observation window itself is the assertion: nothing may change during it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = versions().await.expect("still converged");
    let writes_after = op.metric_sum("kaizen_status_writes_total").await;
    assert_eq!(before, after, "an idle operator changed objects");
    assert_eq!(writes_before, writes_after, "an idle operator sent status writes");
    assert!(writes_before > 0.0, "the operator did write status during convergence");
}

#[tokio::test]
async fn malformed_object_is_stalled_and_does_not_stop_its_watcher() {
    let env = Env::start("malformed", "").await;
    let ns = &env.ns;
    // 20 digits fit the schema (a duration pattern, 32 characters at most) but overflow any real duration.
    let (ok, _, err) = common::run_kubectl_stdin(
        &["apply", "-n", ns, "-f", "-"],
        r#"
apiVersion: kaizen.dev/v1alpha1
kind: ActionItem
metadata: {name: overflow}
spec: {title: Overflow, owner: bob, dueIn: 99999999999999999999s}
---
apiVersion: kaizen.dev/v1alpha1
kind: ActionItem
metadata: {name: fine}
spec: {title: Fine, owner: bob, dueIn: 1d}
"#,
    )
    .await;
    assert!(ok, "{err}");
    let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        ns,
        &kube::api::ApiResource::erase::<ActionItem>(&()),
    );
    let stalled = wait_for(Duration::from_secs(20), "overflow to be Stalled", || async {
        let o = raw.get("overflow").await.ok()?;
        let conds = o.data.get("status")?.get("conditions")?.as_array()?.clone();
        conds
            .into_iter()
            .find(|c| c["type"] == "Stalled" && c["status"] == "True")
    })
    .await;
    assert_eq!(stalled["reason"], "InvalidSpec");
    assert!(
        stalled["message"].as_str().unwrap().contains("99999999999999999999s"),
        "{stalled}"
    );
    let items = &env.items;
    wait_for(Duration::from_secs(20), "the valid item to get status", || async {
        items.get("fine").await.ok()?.status?.phase
    })
    .await;
    // A change made after the bad object still reaches the controller.
    let (ok, _, err) = common::run_kubectl_stdin(&["apply", "-n", ns, "-f", "-"],
        "apiVersion: kaizen.dev/v1alpha1\nkind: ActionItem\nmetadata: {name: later}\nspec: {title: Later, owner: bob}\n",
    )
    .await;
    assert!(ok, "{err}");
    wait_for(Duration::from_secs(20), "a later item to get status", || async {
        items.get("later").await.ok()?.status?.phase
    })
    .await;
    assert!(env.op().logs().contains("does not decode"), "the bad object is logged");
}

#[tokio::test]
async fn sigterm_stops_the_operator_cleanly() {
    // Scoped to a namespace nobody uses, so it never acts on other tests' objects.
    let mut op = Launch::new("namespaces: [sigterm-nothing-here]\n").start().await;
    let (code, _) = op.http_get("/healthz").await.expect("healthz served");
    assert_eq!(code, 200);
    let pid = op.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(15), op.child.wait())
        .await
        .expect("the operator exits within 15s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}; logs:\n{}", op.logs());
    assert!(op.logs().contains("SIGTERM received"));
}

#[tokio::test]
async fn invalid_config_fails_start_up_naming_the_key() {
    let cfg = common::write_config("deadlines:\n  P0: 7d\nreminderIntervall: 1d\n");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kaizen"))
        .args(["run", "--config", cfg.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reminderIntervall"), "{stderr}");
}
