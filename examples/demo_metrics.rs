//! The demo's metrics source (`make demo`): serves `demo_http_error_ratio{namespace, replicaset}` for
//! every ReplicaSet of a namespace (a Canary's stable and canary sides are ReplicaSets, `{{ target }}`
//! in its queries), from the version its pod template runs. An image tag ending in `-bad` errs on a
//! quarter of its requests, any other on 0.2 %, so a Canary's analysis sees a real difference between
//! the primary and the canary. Pods on kwok nodes run nothing, so the version is read from the
//! ReplicaSet itself on every scrape.
//!
//!   cargo run --example demo_metrics -- 127.0.0.1:PORT NAMESPACE

use std::net::SocketAddr;

use axum::{Router, extract::State, routing::get};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::{Api, Client, ResourceExt};

#[derive(Clone)]
struct Source {
    sets: Api<ReplicaSet>,
    namespace: String,
}

fn error_ratio(image: &str) -> f64 {
    if image.rsplit(':').next().is_some_and(|tag| tag.ends_with("-bad")) {
        0.25
    } else {
        0.002
    }
}

async fn metrics(State(source): State<Source>) -> String {
    let mut out = String::from(
        "# HELP demo_http_error_ratio Share of requests answered with 5xx, by ReplicaSet.\n\
         # TYPE demo_http_error_ratio gauge\n",
    );
    let Ok(list) = source.sets.list(&Default::default()).await else {
        return out;
    };
    for d in list.items {
        let image = d
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref()?.spec.as_ref())
            .and_then(|p| p.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        out.push_str(&format!(
            "demo_http_error_ratio{{namespace=\"{}\",replicaset=\"{}\"}} {}\n",
            source.namespace,
            d.name_any(),
            error_ratio(&image)
        ));
    }
    out
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: demo_metrics 127.0.0.1:PORT NAMESPACE");
    let namespace = args.next().expect("usage: demo_metrics 127.0.0.1:PORT NAMESPACE");
    let client = Client::try_default().await.expect("a kubeconfig");
    let source = Source {
        sets: Api::namespaced(client, &namespace),
        namespace,
    };
    let app = Router::new().route("/metrics", get(metrics)).with_state(source);
    let listener = tokio::net::TcpListener::bind(listen).await.expect("the port is free");
    axum::serve(listener, app).await.expect("serves");
}
