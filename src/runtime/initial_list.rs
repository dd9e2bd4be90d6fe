//! How a watch gets its first list of objects: streamed where the apiserver can, listed where not.
//!
//! Streamed (`sendInitialEvents=true`, the apiserver's WatchList): the objects come one by one on the
//! watch itself, each decoded and cut to its cached form as it arrives, so the operator never holds
//! the whole response, nor the whole list decoded in full. A list with `resourceVersion=0` comes in
//! one response whatever its `limit` (the apiserver ignores it there): 99,500 ActionItems were one
//! 64 MB body on v1.35.4, which took a client 9-25 s to receive where the streamed list took 11 s.
//!
//! WatchList is on by default from Kubernetes v1.34. Where it is off (v1.33 and earlier, or turned
//! off), the apiserver refuses the request with 422 Invalid naming `sendInitialEvents` (v1.26 and
//! earlier: naming `resourceVersionMatch`, which they forbid on a watch). Then the
//! watch lists instead, as every watch did before, and so does every watch started after it: the
//! apiserver is asked once per watch at most, and one log line says what it refused.

use std::{fmt::Debug, sync::Arc};

use futures::{StreamExt, stream::BoxStream};
use kube::{
    Api, Resource,
    runtime::watcher::{self, InitialListStrategy, watcher},
};
use serde::de::DeserializeOwned;

use super::watch_health::WatchHealth;

type WatchItem<K> = Result<watcher::Event<K>, watcher::Error>;

/// A watch of `api` as `config` says, its first list streamed unless the apiserver refuses that
/// (then listed; see the module's text). `health` keeps what the watches have learnt; `kind` names
/// the watch in the log.
pub fn watch_streamed_or_listed<K>(
    api: Api<K>,
    config: watcher::Config,
    health: Arc<WatchHealth>,
    kind: &'static str,
) -> BoxStream<'static, WatchItem<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let listed = watcher::Config {
        initial_list_strategy: InitialListStrategy::ListWatch,
        ..config.clone()
    };
    if health.streaming_refused() {
        return watcher(api, listed).boxed();
    }
    let streamed = watcher(api.clone(), config.streaming_lists()).boxed();
    let fallback = Some((api, listed));
    futures::stream::unfold((streamed, fallback), move |(mut current, mut fallback)| {
        let health = health.clone();
        async move {
            loop {
                let item = current.next().await?;
                let refused = matches!(&item, Err(e) if refuses_streaming(e));
                if let Some((api, listed)) = fallback.take_if(|_| refused) {
                    if health.refuse_streaming() {
                        tracing::warn!(
                            kind,
                            error = %item.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                            "the apiserver refuses streaming lists (its WatchList feature is off); \
                             the watches list instead"
                        );
                    }
                    current = watcher(api, listed).boxed();
                    continue;
                }
                return Some((item, (current, fallback)));
            }
        }
    })
    .boxed()
}

/// Whether `error` is the apiserver refusing a streaming list: 422 Invalid at the watch's start,
/// naming one of the parameters only a streaming list sends: `sendInitialEvents` (WatchList off) or
/// `resourceVersionMatch` (v1.26 and earlier, which forbid it on any watch). Any other refusal
/// would refuse a list as well.
fn refuses_streaming(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) => {
            status.is_invalid()
                && ["sendInitialEvents", "resourceVersionMatch"]
                    .iter()
                    .any(|parameter| status.message.contains(parameter))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn start_failed(code: u16, reason: &str, message: &str) -> watcher::Error {
        let mut status = Status::failure(message, reason);
        status.code = code;
        watcher::Error::WatchStartFailed(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn only_a_refusal_of_send_initial_events_means_the_apiserver_cannot_stream() {
        // As v1.35.4 answers with --feature-gates=WatchList=false.
        let refused = start_failed(
            422,
            "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: \
             sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
        );
        assert!(refuses_streaming(&refused));
        // As v1.26 and earlier answer a watch with resourceVersionMatch (sent only when streaming).
        let old = start_failed(
            422,
            "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: \
             resourceVersionMatch is forbidden for watch",
        );
        assert!(refuses_streaming(&old));
        // A bad selector is refused for a list just the same: no reason to stop streaming.
        let selector = start_failed(422, "Invalid", "unable to parse requirement: invalid label key");
        assert!(!refuses_streaming(&selector));
        let forbidden = start_failed(403, "Forbidden", "cannot watch resource sendInitialEvents");
        assert!(!refuses_streaming(&forbidden));
        let gone = watcher::Error::WatchError(Box::new(Status::failure("sendInitialEvents", "Expired")));
        assert!(!refuses_streaming(&gone));
    }
}
