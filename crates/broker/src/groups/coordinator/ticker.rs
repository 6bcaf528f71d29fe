//! The ticker: every `tick_ms` it expires sessions, rebalance and sync
//! deadlines, the initial rebalance delay and member ids that never joined,
//! writes the group metadata that changed, and starts offset expiry.

use std::rc::Rc;
use std::time::Duration;

use tracing::info;

use super::{tick_ms, Coordinator, GroupState};
use ringstream_core::clock::now_ms;

/// Runs `tick` every `tick_ms` for as long as the coordinator lives.
pub(super) fn start(coordinator: &Rc<Coordinator>) {
    let weak = Rc::downgrade(coordinator);
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_millis(tick_ms)).await;
            let Some(coordinator) = weak.upgrade() else { break };
            // Leadership of offsets-log partitions moves: load the groups of
            // those led here now (a no-op when nothing changed).
            coordinator.load_led().await;
            coordinator.tick();
        }
    })
    .detach();
}

impl Coordinator {
    fn tick(self: &Rc<Self>) {
        let now = now_ms();
        let mut changed = Vec::new();
        let topics = &*self.topics;
        for g in self.groups.borrow_mut().values_mut() {
            // Groups of a partition led elsewhere now wait to be dropped
            // (`ensure_loaded`); this broker acts for none of them.
            if !self.serves(self.partition_of(&g.id)) {
                continue;
            }
            if let Some(modern) = &mut g.modern {
                for id in modern.expire(now, topics) {
                    info!(group = %g.id, member = %id, "consumer-group member expired");
                }
                let state = if modern.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
                if std::mem::take(&mut modern.dirty) {
                    g.dirty = true;
                    changed.push(g.id.clone());
                }
                if g.state != state {
                    g.set_state(state, now);
                }
                continue;
            }
            if g.state == GroupState::Empty && g.pending.is_empty() {
                continue;
            }
            g.pending.retain(|id, deadline| {
                let keep = *deadline > now;
                if !keep {
                    info!(group = %g.id, member = %id, "member id never joined; dropped");
                }
                keep
            });
            match g.state {
                GroupState::PreparingRebalance => {
                    if g.initial_delay.is_some_and(|(until, _)| until <= now) {
                        g.initial_delay = None;
                    }
                    // A member that neither rejoins nor heartbeats is gone
                    // after its session, not only at the rebalance timeout.
                    let silent: Vec<String> = g
                        .members
                        .iter()
                        .filter(|m| m.join_waiter.is_none() && m.heartbeat_deadline_ms <= now)
                        .map(|m| m.id.clone())
                        .collect();
                    for id in &silent {
                        info!(group = %g.id, member = %id, "session timed out during a rebalance; member removed");
                        g.remove_member(id);
                    }
                    let force = now >= g.rebalance_deadline_ms;
                    g.maybe_complete_join(now, force);
                }
                GroupState::CompletingRebalance | GroupState::Stable => {
                    let expired: Vec<String> = g
                        .members
                        .iter()
                        .filter(|m| m.heartbeat_deadline_ms <= now && m.sync_waiter.is_none())
                        .map(|m| m.id.clone())
                        .collect();
                    for id in &expired {
                        info!(group = %g.id, member = %id, "session timed out; member removed");
                        g.remove_member(id);
                    }
                    if !expired.is_empty() {
                        g.after_member_removed(now, "session timeout");
                    } else if g.state == GroupState::CompletingRebalance && now >= g.sync_deadline_ms {
                        let stragglers: Vec<String> =
                            g.members.iter().filter(|m| m.sync_waiter.is_none()).map(|m| m.id.clone()).collect();
                        for id in &stragglers {
                            g.remove_member(id);
                        }
                        g.after_member_removed(now, "sync timed out");
                    }
                }
                GroupState::Empty | GroupState::Dead => {}
            }
            if g.dirty {
                changed.push(g.id.clone());
            }
        }
        for id in changed {
            self.persist_if_dirty(&id);
        }
        if now >= self.next_retention_check_ms.get() {
            self.next_retention_check_ms.set(now + self.config.offsets_retention_check_interval_ms);
            let this = self.clone();
            glommio::spawn_local(async move { this.expire_offsets(now).await }).detach();
        }
    }
}
