//! [`Env`]: what every integration test and benchmark stands on.

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::{Namespace, Secret, Service},
    events::v1::Event,
};
use kaizen::api::{
    ActionItem, Canary, Incident,
    action_item::{ActionItemSpec, ActionItemStatus},
    canary::{CanaryPhase, CanarySpec, CanaryStatus},
    incident::{IncidentSpec, IncidentStatus},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;

use super::{Launch, Operator, client, kubectl_blocking, rand_suffix, wait_for};

/// How long the helpers below wait for the cluster or the operator.
pub const WAIT: Duration = Duration::from_secs(60);

/// One test's world: a fresh namespace `<prefix>-<random>`, typed APIs into it, and (once started) the
/// real operator scoped to it. Dropping it, pass or fail, removes the namespace; when the test failed it
/// first prints the namespace's objects. Canaries carry a finalizer that only a running operator
/// removes, so they are deleted while the operator still runs.
pub struct Env {
    pub ns: String,
    pub client: Client,
    pub incidents: Api<Incident>,
    pub items: Api<ActionItem>,
    pub canaries: Api<Canary>,
    pub deployments: Api<Deployment>,
    pub services: Api<Service>,
    pub secrets: Api<Secret>,
    launch: Option<Launch>,
    op: Option<Operator>,
}

impl Env {
    /// A fresh namespace; no operator yet (see [`Env::start_operator`]).
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        let ns = format!("{prefix}-{:08x}", rand_suffix());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace creates");
        Self {
            incidents: Api::namespaced(client.clone(), &ns),
            items: Api::namespaced(client.clone(), &ns),
            canaries: Api::namespaced(client.clone(), &ns),
            deployments: Api::namespaced(client.clone(), &ns),
            services: Api::namespaced(client.clone(), &ns),
            secrets: Api::namespaced(client.clone(), &ns),
            client,
            ns,
            launch: None,
            op: None,
        }
    }

    /// A fresh namespace and the operator scoped to it with `policy` (see [`Env::launch`]).
    pub async fn start(prefix: &str, policy: &str) -> Self {
        let mut env = Self::new(prefix).await;
        env.start_operator(policy).await;
        env
    }

    /// A fresh namespace and the operator scoped to it, with a Slack sink (`chat`) and a JSON sink
    /// (`pager`) posting to `receiver` under `/slack` and `/json`, their URLs in Secret `hooks` in the
    /// namespace (also the operator's own), reminding every hour.
    pub async fn with_sinks(prefix: &str, receiver: &super::servers::Receiver) -> Self {
        Self::with_sinks_and(prefix, receiver, "").await
    }

    /// [`Env::with_sinks`] with more `policy` lines (say, its Prometheus addresses).
    pub async fn with_sinks_and(prefix: &str, receiver: &super::servers::Receiver, policy: &str) -> Self {
        let mut env = Self::new(prefix).await;
        env.secret(
            "hooks",
            &[("slack", &receiver.url("/slack")), ("json", &receiver.url("/json"))],
        )
        .await;
        let launch = env
            .launch(&format!(
                "reminderInterval: 1h\nsinks:\n\
                 - {{name: chat, format: slack, urlSecretRef: {{name: hooks, key: slack}}}}\n\
                 - {{name: pager, format: json, urlSecretRef: {{name: hooks, key: json}}}}\n{policy}"
            ))
            .own_namespace(&env.ns);
        env.run_operator(launch).await;
        env
    }

    /// How to run an operator that acts only in this namespace: `policy` (YAML, without `namespaces`)
    /// with `namespaces: [<ns>]` in front, so no test ever acts on another's objects.
    pub fn launch(&self, policy: &str) -> Launch {
        Launch::new(&format!("namespaces: [{}]\n{policy}", self.ns))
    }

    /// Starts the operator with [`Env::launch`]`(policy)`.
    pub async fn start_operator(&mut self, policy: &str) -> &Operator {
        let launch = self.launch(policy);
        self.run_operator(launch).await
    }

    /// Starts the operator as `launch` says (say, with other credentials), replacing any running one.
    pub async fn run_operator(&mut self, launch: Launch) -> &Operator {
        self.op = Some(launch.start().await);
        self.launch = Some(launch);
        self.op()
    }

    /// Starts the operator again as it was last started (after [`Env::kill_operator`]).
    pub async fn restart_operator(&mut self) -> &Operator {
        let launch = self.launch.clone().expect("an operator was started before");
        self.run_operator(launch).await
    }

    /// SIGKILLs the operator: no graceful anything.
    pub async fn kill_operator(&mut self) {
        self.op.as_mut().expect("an operator runs").kill().await;
    }

    pub fn op(&self) -> &Operator {
        self.op.as_ref().expect("the operator was started")
    }

    pub fn op_mut(&mut self) -> &mut Operator {
        self.op.as_mut().expect("the operator was started")
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn incident(&self, name: &str, spec: IncidentSpec) -> Incident {
        let inc = Incident::new(name, spec);
        self.incidents.create(&PostParams::default(), &inc).await.unwrap()
    }

    pub async fn action_item(&self, name: &str, spec: ActionItemSpec) -> ActionItem {
        let item = ActionItem::new(name, spec);
        self.items.create(&PostParams::default(), &item).await.unwrap()
    }

    pub async fn canary(&self, name: &str, spec: CanarySpec) -> Canary {
        let canary = Canary::new(name, spec);
        self.canaries.create(&PostParams::default(), &canary).await.unwrap()
    }

    /// A Deployment as a user keeps it in Git (see [`super::build::target`]).
    pub async fn target(&self, name: &str, version: &str, replicas: i32) -> Deployment {
        let d = super::build::target(name, version, replicas);
        self.deployments.create(&PostParams::default(), &d).await.unwrap()
    }

    /// A Secret with these string values.
    pub async fn secret(&self, name: &str, data: &[(&str, &str)]) -> Secret {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            string_data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        };
        self.secrets.create(&PostParams::default(), &secret).await.unwrap()
    }

    pub async fn item_status(&self, name: &str) -> Option<ActionItemStatus> {
        self.items.get(name).await.ok()?.status
    }

    pub async fn incident_status(&self, name: &str) -> Option<IncidentStatus> {
        self.incidents.get(name).await.ok()?.status
    }

    /// Waits (up to [`WAIT`]) until Canary `name` has a status for which `ok` holds.
    pub async fn canary_where(&self, name: &str, what: &str, ok: impl Fn(&CanaryStatus) -> bool) -> CanaryStatus {
        wait_for(WAIT, &format!("Canary {name}: {what}"), || async {
            let s = self.canaries.get(name).await.ok()?.status?;
            ok(&s).then_some(s)
        })
        .await
    }

    pub async fn canary_phase(&self, name: &str, phase: CanaryPhase) -> CanaryStatus {
        self.canary_where(name, &format!("phase {phase:?}"), |s| s.phase == Some(phase))
            .await
    }

    /// Deployment `name`'s (spec.replicas, available replicas).
    pub async fn replicas(&self, name: &str) -> (Option<i32>, i32) {
        let d = self.deployments.get(name).await.unwrap();
        (
            d.spec.and_then(|s| s.replicas),
            d.status.and_then(|s| s.available_replicas).unwrap_or(0),
        )
    }

    /// Waits (up to [`WAIT`]) until Deployment `name` has `want` as (spec.replicas, available replicas).
    pub async fn wait_replicas(&self, name: &str, want: (Option<i32>, i32)) {
        wait_for(
            WAIT,
            &format!("{name} at {want:?} (spec, available) replicas"),
            || async { (self.replicas(name).await == want).then_some(()) },
        )
        .await;
    }

    /// ReplicaSet `name`'s (spec.replicas, available replicas); (None, 0) when it does not exist.
    pub async fn set_replicas(&self, name: &str) -> (Option<i32>, i32) {
        let sets: Api<ReplicaSet> = self.api();
        let Some(rs) = sets.get_opt(name).await.unwrap() else {
            return (None, 0);
        };
        (
            rs.spec.and_then(|s| s.replicas),
            rs.status.and_then(|s| s.available_replicas).unwrap_or(0),
        )
    }

    /// Canary `name`'s status as the apiserver has it now (it must have one).
    pub async fn canary_status(&self, name: &str) -> CanaryStatus {
        self.canaries.get(name).await.unwrap().status.unwrap()
    }

    /// The stable side of Canary `canary`: its stable revision's ReplicaSet's (spec, available)
    /// replicas; (None, 0) before it has one.
    pub async fn stable(&self, canary: &str) -> (Option<i32>, i32) {
        let c = self.canaries.get(canary).await.unwrap();
        match c.status.as_ref().and_then(|s| s.stable_revision.as_deref()) {
            Some(rev) => self.set_replicas(&kaizen::canary::templates::set_name(&c, rev)).await,
            None => (None, 0),
        }
    }

    /// The canary side of Canary `canary`: its canary revision's ReplicaSet's (spec, available)
    /// replicas, (Some(0), 0) when that is the stable revision or has no ReplicaSet.
    pub async fn canary_side(&self, canary: &str) -> (Option<i32>, i32) {
        let c = self.canaries.get(canary).await.unwrap();
        let status = c.status.clone().unwrap_or_default();
        match status.canary_revision.as_deref() {
            Some(rev) if status.stable_revision.as_deref() != Some(rev) => {
                match self.set_replicas(&kaizen::canary::templates::set_name(&c, rev)).await {
                    (None, _) => (Some(0), 0),
                    r => r,
                }
            }
            _ => (Some(0), 0),
        }
    }

    /// Waits (up to [`WAIT`]) until the stable side of Canary `canary` is at `want`.
    pub async fn wait_stable(&self, canary: &str, want: (Option<i32>, i32)) {
        wait_for(
            WAIT,
            &format!("the stable side of {canary} at {want:?} (spec, available) replicas"),
            || async { (self.stable(canary).await == want).then_some(()) },
        )
        .await;
    }

    /// The image of the first container of the ReplicaSet serving Canary `canary`'s stable revision.
    pub async fn stable_image(&self, canary: &str) -> String {
        let c = self.canaries.get(canary).await.unwrap();
        let rev = c.status.as_ref().and_then(|s| s.stable_revision.clone()).unwrap();
        let sets: Api<ReplicaSet> = self.api();
        let rs = sets.get(&kaizen::canary::templates::set_name(&c, &rev)).await.unwrap();
        rs.spec.unwrap().template.unwrap().spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }

    /// The ReplicaSets Kaizen made for Canary `canary` (label `kaizen.dev/canary`), by name.
    pub async fn sets_of(&self, canary: &str) -> Vec<ReplicaSet> {
        let sets: Api<ReplicaSet> = self.api();
        let params = kube::api::ListParams::default().labels(&format!("kaizen.dev/canary={canary}"));
        let mut items = sets.list(&params).await.unwrap().items;
        items.retain(|s| s.metadata.deletion_timestamp.is_none());
        items
    }

    /// The image of Deployment `name`'s first container.
    pub async fn image(&self, name: &str) -> String {
        let d = self.deployments.get(name).await.unwrap();
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    }

    /// A GitOps commit changing the image of Deployment `name` (container `app`) to
    /// `example.com/<name>:<version>`: a new revision.
    pub async fn set_image(&self, name: &str, version: &str) {
        self.deployments
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "app", "image": format!("example.com/{name}:{version}")}
                ]}}}})),
            )
            .await
            .unwrap();
    }

    /// Sets annotation `key` on Canary `name`.
    pub async fn annotate_canary(&self, name: &str, key: &str, value: &str) {
        self.canaries
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .unwrap();
    }

    /// Deletes Canary `name` and waits until it and its `<name>-primary` are gone.
    pub async fn delete_canary(&self, name: &str) {
        self.canaries.delete(name, &Default::default()).await.unwrap();
        wait_for(
            WAIT,
            &format!("the Canary {name} and its ReplicaSets to be gone"),
            || async {
                let gone = self.canaries.get_opt(name).await.ok()?.is_none();
                (gone && self.sets_of(name).await.is_empty()).then_some(())
            },
        )
        .await;
    }

    /// The Events recorded about the object `name`.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let api: Api<Event> = self.api();
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|ev| ev.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    /// The reasons of the Events recorded about the object `name`.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.events(name).await.into_iter().filter_map(|ev| ev.reason).collect()
    }

    /// Prints what a human would look at to understand a failure.
    pub fn dump(&self) {
        let args = [
            "get",
            "kaizen,deployments,services,events",
            "-n",
            &self.ns,
            "-o",
            "yaml",
        ];
        if let Some(out) = kubectl_blocking(&args) {
            eprintln!(
                "---- objects in namespace {} ----\n{}",
                self.ns,
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

/// Runs inside an async test, so it calls kubectl synchronously (nothing here may be awaited) and
/// never panics.
impl Drop for Env {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        let ns = self.ns.clone();
        // While the operator runs, it removes its finalizer from deleted Canaries and hands their
        // workloads back.
        // Deleted before the operator goes, so one still shutting down cannot add the finalizer back.
        let wait = if self.op.is_some() {
            "--wait=true"
        } else {
            "--wait=false"
        };
        kubectl_blocking(&[
            "delete",
            "canaries.kaizen.dev",
            "--all",
            "-n",
            &ns,
            wait,
            "--timeout=30s",
        ]);
        self.op = None; // killed on drop
        // Whatever still carries the finalizer (the operator was too slow, or is gone) is released by
        // hand, or the namespace would stay Terminating.
        if let Some(out) = kubectl_blocking(&["get", "canaries.kaizen.dev", "-n", &ns, "-o", "name"]) {
            for canary in String::from_utf8_lossy(&out.stdout).lines() {
                kubectl_blocking(&[
                    "patch",
                    canary,
                    "-n",
                    &ns,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ]);
            }
        }
        kubectl_blocking(&["delete", "namespace", &ns, "--wait=false"]);
    }
}

/// Every status a Canary goes through, as a human watching `kubectl get canary -w` sees them: polled
/// every 50 ms until [`CanaryPoller::stop`].
pub struct CanaryPoller {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<CanaryStatus>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CanaryPoller {
    /// Stops polling and returns what was seen, in order.
    pub async fn stop(self) -> Vec<CanaryStatus> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Env {
    /// Starts polling the status of Canary `name` (see [`CanaryPoller`]).
    pub fn poll_canary(&self, name: &str) -> CanaryPoller {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (api, stop, seen, name) = (self.canaries.clone(), stop.clone(), seen.clone(), name.to_string());
            async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(c) = api.get(&name).await
                        && let Some(s) = c.status
                    {
                        seen.lock().unwrap().push(s);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        CanaryPoller { stop, seen, task }
    }
}
