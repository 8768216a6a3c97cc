//! WATCH: history replay from a resourceVersion, live events, selector transitions.

use super::*;

/// A running watch: queued lines first, then live events.
pub(super) struct WatchSetup {
    queue: VecDeque<Bytes>,
    rx: broadcast::Receiver<Arc<WatchRec>>,
    filter: Filter,
    def: ResourceDef,
    /// Live events at or below this were already queued from history.
    after_rv: u64,
    deadline: Option<tokio::time::Instant>,
    done: bool,
}

impl WatchSetup {
    pub(super) async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.queue.pop_front() {
                return Some(line);
            }
            if self.done {
                return None;
            }
            let deadline = self.deadline;
            let timeout = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    Ok(rec) => {
                        if rec.rv > self.after_rv {
                            if let Some((kind, obj)) = self.filter.event_for(&rec) {
                                self.queue.push_back(event_line(kind, with_type(obj, &self.def)));
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.queue.push_back(expired_line());
                        self.done = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = timeout => return None,
            }
        }
    }
}

pub(super) fn event_line(kind: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

pub(super) fn expired_line() -> Bytes {
    let status = ApiError::new(410, "Expired", "too old resource version").to_status();
    event_line("ERROR", status)
}

pub(super) fn watch(st: &State, ctx: &Ctx, def: &ResourceDef, ns: Option<&str>) -> Outcome {
    let filter = match Filter::from_ctx(ctx, def, ns) {
        Ok(f) => f,
        Err(e) => return e.into(),
    };
    let rv_param = ctx
        .query
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let send_initial = ctx.flag("sendInitialEvents");
    let mut queue = VecDeque::new();
    let mut done = false;
    if send_initial || rv_param.is_empty() || rv_param == "0" {
        // "Start at most recent / any": synthetic ADDED for what exists now.
        queue.extend(
            st.select(&filter, None)
                .map(|(_, s)| event_line("ADDED", with_type(s.obj.clone(), def))),
        );
        if send_initial {
            let bookmark = json!({
                "kind": def.kind, "apiVersion": def.api_version(),
                "metadata": {"resourceVersion": st.rv.to_string(),
                             "annotations": {"k8s.io/initial-events-end": "true"}}
            });
            queue.push_back(event_line("BOOKMARK", bookmark));
        }
    } else {
        match rv_param.parse::<u64>() {
            Err(_) => {
                return ApiError::bad_request(&format!("invalid resourceVersion {rv_param:?}"))
                    .into()
            }
            Ok(from) if from < st.compacted_rv => {
                queue.push_back(expired_line());
                done = true;
            }
            Ok(from) => {
                // History is in resourceVersion order: the changes after `from` are its tail,
                // found by bisection rather than by reading every older record.
                let newer = st.history.partition_point(|r| r.rv <= from);
                let tail = st.history.get(newer..).unwrap_or_default();
                st.examined.set(st.examined.get() + tail.len() as u64);
                queue.extend(
                    tail.iter()
                        .filter_map(|r| filter.event_for(r))
                        .map(|(kind, obj)| event_line(kind, with_type(obj, def))),
                )
            }
        }
    }
    let deadline = ctx
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    Outcome::Watch(Box::new(WatchSetup {
        queue,
        // Subscribed under the state lock: nothing between history and live is lost.
        rx: st.events_tx.subscribe(),
        filter,
        def: def.clone(),
        after_rv: st.rv,
        deadline,
        done,
    }))
}
