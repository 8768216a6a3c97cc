//! A tiny cloneable shutdown signal (a `watch` channel) shared by the listeners, the
//! certificate watcher and the controllers.
use tokio::sync::watch;

#[derive(Clone)]
pub struct Signal(watch::Receiver<bool>);

pub struct Trigger(watch::Sender<bool>);

pub fn channel() -> (Trigger, Signal) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Signal(rx))
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Signal {
    /// Resolves once the trigger fired (or was dropped).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|v| *v).await;
    }

    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }
}
