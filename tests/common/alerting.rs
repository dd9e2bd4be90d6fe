//! Alerting with real parts, on loopback, owned by one test: Debian's `prometheus-alertmanager` and a
//! Prometheus of the test's own that evaluates an alerting rule and sends to it (the shared Prometheus
//! has no rule files and no Alertmanager). Both are killed on drop; their logs go to a temp dir.

use std::{path::PathBuf, process::Stdio, time::Duration};

use super::{free_port, http, rand_suffix, wait_for};

/// A child process on a free loopback port, with its own directory; killed on drop.
pub struct Daemon {
    pub port: u16,
    pub dir: PathBuf,
    child: tokio::process::Child,
}

impl Daemon {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

/// Starts `program args` (each `{port}` and `{dir}` replaced) and waits until `<url>/-/ready` answers 200.
async fn start(program: &str, name: &str, config: &[(&str, String)], args: &[&str]) -> Daemon {
    let dir = std::env::temp_dir().join(format!("kaizen-{name}-{:08x}", rand_suffix()));
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for (file, text) in config {
        std::fs::write(dir.join(file), text).unwrap();
    }
    // A free port can be taken between choosing and binding it: then the process exits, and another is tried.
    for _ in 0..3 {
        let port = free_port();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{port}", &port.to_string())
                    .replace("{dir}", &dir.display().to_string())
            })
            .collect();
        let mut child = tokio::process::Command::new(program)
            .args(&args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} does not start ({e}); hack/cluster.sh up installs it"));
        let url = format!("http://127.0.0.1:{port}/-/ready");
        let client = http();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Daemon { port, dir, child };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.start_kill();
        eprintln!(
            "{program} did not get ready on {port}: {}",
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
    }
    panic!("{program} did not start");
}

/// Alertmanager routing every alert to one webhook receiver (`url`, bearer `token`), grouped by
/// `group_by`, with one-second group timers and repeats every `repeat`.
pub async fn alertmanager(url: &str, token: &str, group_by: &[&str], repeat: &str) -> Daemon {
    let config = format!(
        "route:\n  receiver: kaizen\n  group_by: {group_by:?}\n  group_wait: 1s\n  group_interval: 1s\n  \
         repeat_interval: {repeat}\nreceivers:\n  - name: kaizen\n    webhook_configs:\n      - url: '{url}'\n        \
         send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n            \
         credentials: '{token}'\n"
    );
    start(
        "prometheus-alertmanager",
        "alertmanager",
        &[("alertmanager.yml", config)],
        &[
            "--config.file={dir}/alertmanager.yml",
            "--storage.path={dir}/data",
            "--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ],
    )
    .await
}

/// A Prometheus scraping `target` (host:port) every second, evaluating `rules` (a rule file's YAML)
/// every second and sending alerts to `alertmanager`.
pub async fn prometheus_with_rules(target: &str, rules: &str, alertmanager: &Daemon) -> Daemon {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  \
         alertmanagers:\n    - static_configs: [{{targets: ['127.0.0.1:{}']}}]\nscrape_configs:\n  - job_name: \
         exporter\n    static_configs: [{{targets: ['{target}']}}]\n",
        alertmanager.port
    );
    let dir_rules = rules.to_string();
    // Relative rule_files resolve against the config file's directory.
    start(
        "prometheus",
        "prometheus-rules",
        &[("prometheus.yml", config), ("rules.yml", dir_rules)],
        &[
            "--config.file={dir}/prometheus.yml",
            "--storage.tsdb.path={dir}/data",
            "--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
        ],
    )
    .await
}

/// The alerts Prometheus `p` holds (its `/api/v1/alerts`).
pub async fn alerts(p: &Daemon) -> Vec<serde_json::Value> {
    let Ok(resp) = http().get(format!("{}/api/v1/alerts", p.url())).send().await else {
        return Vec::new();
    };
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    v["data"]["alerts"].as_array().cloned().unwrap_or_default()
}

/// Waits until Prometheus `p` has a firing alert whose labels include `label=value`; returns it.
pub async fn firing(p: &Daemon, label: &str, value: &str) -> serde_json::Value {
    wait_for(
        Duration::from_secs(60),
        &format!("a firing alert with {label}={value}"),
        || async {
            alerts(p)
                .await
                .into_iter()
                .find(|a| a["state"] == "firing" && a["labels"][label] == value)
        },
    )
    .await
}

/// A version-4 webhook notification for group `group_key` with `alerts` as (fingerprint, status, startsAt, endsAt).
pub fn notification(group_key: &str, status: &str, alerts: &[(&str, &str, &str, &str)]) -> serde_json::Value {
    serde_json::json!({
        "receiver": "kaizen", "status": status, "version": "4", "groupKey": group_key,
        "truncatedAlerts": 0, "externalURL": "http://alertmanager.test",
        "groupLabels": {"alertname": "CheckoutErrors"},
        "commonLabels": {"alertname": "CheckoutErrors", "severity": "critical", "service": "checkout"},
        "commonAnnotations": {"summary": "Checkout errors above 5%", "runbook_url": "https://runbooks.example/checkout"},
        "alerts": alerts.iter().map(|(fp, st, starts, ends)| serde_json::json!({
            "status": st, "fingerprint": fp, "startsAt": starts, "endsAt": ends,
            "labels": {"alertname": "CheckoutErrors", "severity": "critical", "service": "checkout", "pod": fp},
            "annotations": {"summary": "Checkout errors above 5%", "description": "5xx ratio is 7%"},
            "generatorURL": "http://prometheus.test/graph",
        })).collect::<Vec<_>>(),
    })
}
