//! Running the built `kubectl-kaizen` against the local control plane, as a user would: its exit
//! code, stdout and stderr, bounded in time; and `status -w` in the background.

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::Value;

use super::WAIT;

pub const BIN: &str = env!("CARGO_BIN_EXE_kubectl-kaizen");

pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

pub fn command(kubeconfig: &Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    c.args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Runs the plugin with `args` as the cluster admin, bounded by a minute.
pub async fn kz_as(kubeconfig: &Path, args: &[&str]) -> Run {
    let child = command(kubeconfig, args).spawn().expect("kubectl-kaizen runs");
    finish(child, args).await
}

/// Runs the plugin with `args` and the kubeconfig `kubeconfig`, `stdin` on its standard input, bounded
/// by a minute.
pub async fn kz_stdin_as(kubeconfig: &Path, args: &[&str], stdin: &str) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut child = command(kubeconfig, args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("kubectl-kaizen runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    finish(child, args).await
}

/// Waits (at most a minute) for the plugin to exit, with what it printed.
async fn finish(child: tokio::process::Child, args: &[&str]) -> Run {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl-kaizen {args:?} did not finish within 60 s"))
        .unwrap();
    Run {
        code: out.status.code().expect("exited, not killed"),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub async fn kz(args: &[&str]) -> Run {
    kz_as(&super::kubeconfig(), args).await
}

/// Runs the plugin in namespace `ns`.
pub async fn kz_in(ns: &str, args: &[&str]) -> Run {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    kz(&all).await
}

pub fn ok(r: &Run, what: &str) {
    assert_eq!(
        r.code, 0,
        "{what}: exit {}\nstdout:\n{}\nstderr:\n{}",
        r.code, r.out, r.err
    );
}

pub fn json(r: &Run) -> Value {
    serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", r.out))
}

/// Starts `status -w` in the background; await the handle for its result.
pub fn watch(ns: &str, target: &str, timeout: &str) -> tokio::task::JoinHandle<Run> {
    let (ns, target, timeout) = (ns.to_string(), target.to_string(), timeout.to_string());
    tokio::spawn(async move { kz_in(&ns, &["status", &target, "-w", "--timeout", &timeout]).await })
}

/// A `status -w` whose first view has been printed: what the test changes next is seen as a change.
pub struct Watching {
    pub child: tokio::process::Child,
    pub first: String,
    pub rest: tokio::task::JoinHandle<String>,
}

impl Watching {
    /// Starts `status TARGET -w` and reads its output until a line contains `marker`.
    pub async fn start(ns: &str, target: &str, marker: &str) -> Self {
        let args = ["-n", ns, "status", target, "-w", "--timeout", "60s"];
        Self::spawn(command(&super::kubeconfig(), &args), marker).await
    }

    /// Starts `command` (stdout and stderr piped) and reads its output until a line contains `marker`.
    pub async fn spawn(mut command: tokio::process::Command, marker: &str) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let mut child = command.spawn().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut first = String::new();
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                first.push_str(&line);
                first.push('\n');
                if line.contains(marker) {
                    return;
                }
            }
            panic!("the watch ended before printing {marker:?}:\n{first}");
        };
        tokio::time::timeout(WAIT, read)
            .await
            .expect("the first view within a minute");
        let mut reader = lines.into_inner();
        let rest = tokio::spawn(async move {
            let mut s = String::new();
            reader.read_to_string(&mut s).await.unwrap();
            s
        });
        Self { child, first, rest }
    }

    /// Waits (bounded) for the watch to end.
    pub async fn finish(mut self) -> Run {
        use tokio::io::AsyncReadExt;
        let status = tokio::time::timeout(Duration::from_secs(90), self.child.wait())
            .await
            .expect("the watch ends within its timeout")
            .unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        Run {
            code: status.code().expect("exited"),
            out: self.first + &self.rest.await.unwrap(),
            err,
        }
    }
}
