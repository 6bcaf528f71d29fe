//! A partition's place in replication, and the leader's view of its
//! followers: pure state, no I/O, so the rules Kafka's `Partition` class
//! follows are unit-tested here.
//!
//! - `Role::Sole`: the only replica (RF=1, or a single node). The high
//!   watermark is the log end, as it always was.
//! - `Role::Leader`: followers fetch from this replica. The high watermark
//!   is the smallest log end over the ISR (the committed ISR plus replicas
//!   whose addition the leader has asked for: Kafka's "maximal ISR", so a
//!   replica that may become leader never lacks what the leader exposed).
//! - `Role::Follower`: this replica copies the leader's batches as they are
//!   and takes the leader's high watermark, capped at its own log end.

use std::collections::BTreeMap;

use ringstream_core::types::{LeaderEpoch, Offset};

/// A broker id, as the metadata names replicas.
pub type ReplicaId = i32;

/// What the cluster metadata says about one partition, as its replica on
/// this node needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The only replica, leading in `epoch`.
    Sole {
        epoch: LeaderEpoch,
    },
    Leader(LeaderAssignment),
    /// `leader` is -1 while the partition has no leader.
    Follower {
        leader: ReplicaId,
        epoch: LeaderEpoch,
    },
}

/// Leadership as the metadata gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderAssignment {
    pub local: ReplicaId,
    pub epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub replicas: Vec<ReplicaId>,
    pub isr: Vec<ReplicaId>,
}

/// What the leader knows of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerState {
    /// The follower's log end: its last fetch offset. None until it fetches
    /// in this leader epoch.
    pub log_end: Option<Offset>,
    /// When the follower was last caught up with the leader (Kafka's
    /// `lastCaughtUpTimeMs`); the leader's start in this epoch until then.
    pub caught_up_ms: i64,
    pub last_fetch_ms: i64,
    /// The leader's log end at the follower's previous fetch.
    pub leader_end_at_last_fetch: Offset,
}

/// The leader side of one partition.
#[derive(Clone, Debug)]
pub struct LeaderState {
    pub assignment: LeaderAssignment,
    /// The log end when this replica became leader in this epoch: a
    /// follower joins the ISR only once it has everything before it.
    pub epoch_start: Offset,
    pub followers: BTreeMap<ReplicaId, FollowerState>,
    /// Replicas the leader asked the controller to add to the ISR, counted
    /// in the high watermark from the moment of asking.
    pub pending_add: Vec<ReplicaId>,
    /// When an ISR change was last asked for (at most one in flight).
    pub change_asked_ms: Option<i64>,
}

/// A partition's replication state on this node.
#[derive(Clone, Debug)]
pub enum Replication {
    Sole,
    Leader(LeaderState),
    Follower { leader: ReplicaId, epoch: LeaderEpoch },
}

/// A change to the ISR the leader should ask the controller for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub isr: Vec<ReplicaId>,
}

impl LeaderState {
    pub fn new(assignment: LeaderAssignment, now_ms: i64, log_end: Offset) -> LeaderState {
        let followers = assignment
            .replicas
            .iter()
            .filter(|&&r| r != assignment.local)
            .map(|&r| {
                (
                    r,
                    FollowerState {
                        log_end: None,
                        caught_up_ms: now_ms,
                        last_fetch_ms: now_ms,
                        leader_end_at_last_fetch: log_end,
                    },
                )
            })
            .collect();
        LeaderState { assignment, epoch_start: log_end, followers, pending_add: Vec::new(), change_asked_ms: None }
    }

    /// A new assignment in the same leader epoch (an ISR change or a
    /// reassignment): follower positions are kept.
    pub fn update(&mut self, assignment: LeaderAssignment, now_ms: i64, log_end: Offset) {
        let mut followers = BTreeMap::new();
        for &r in assignment.replicas.iter().filter(|&&r| r != assignment.local) {
            let state = self.followers.get(&r).copied().unwrap_or(FollowerState {
                log_end: None,
                caught_up_ms: now_ms,
                last_fetch_ms: now_ms,
                leader_end_at_last_fetch: log_end,
            });
            followers.insert(r, state);
        }
        self.followers = followers;
        self.pending_add.retain(|r| !assignment.isr.contains(r) && assignment.replicas.contains(r));
        if self.assignment.partition_epoch != assignment.partition_epoch {
            self.change_asked_ms = None;
        }
        self.assignment = assignment;
    }

    /// The replicas the high watermark waits for.
    pub fn maximal_isr(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.assignment.isr.iter().chain(self.pending_add.iter()).copied()
    }

    /// The high watermark these positions allow: the least log end over
    /// the maximal ISR (the leader's own is `log_end`). A follower that has
    /// not fetched in this epoch holds it at `current`.
    pub fn high_watermark(&self, log_end: Offset, current: Offset) -> Offset {
        let mut hw = log_end;
        for r in self.maximal_isr() {
            if r == self.assignment.local {
                continue;
            }
            match self.followers.get(&r).and_then(|f| f.log_end) {
                Some(end) => hw = hw.min(end),
                None => hw = hw.min(current),
            }
        }
        hw.max(current.min(log_end))
    }

    /// Records a follower's fetch from `offset` (its log end) while the
    /// leader's log ends at `log_end`. Kafka's rule: caught up now when it
    /// has everything; caught up as of its previous fetch when this fetch
    /// reaches what the leader had then. Returns false for a replica that
    /// is not a follower of this partition.
    pub fn on_fetch(&mut self, replica: ReplicaId, offset: Offset, log_end: Offset, now_ms: i64) -> bool {
        let Some(f) = self.followers.get_mut(&replica) else { return false };
        if offset >= log_end {
            f.caught_up_ms = now_ms;
        } else if offset >= f.leader_end_at_last_fetch {
            f.caught_up_ms = f.caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end = Some(offset.min(log_end));
        f.last_fetch_ms = now_ms;
        f.leader_end_at_last_fetch = log_end;
        true
    }

    /// The ISR change due now, if any and none is in flight (or the one in
    /// flight is older than `retry_ms`): followers in the ISR that have not
    /// caught up for `lag_ms` leave; followers outside it whose log reaches
    /// the high watermark and this epoch's start join.
    pub fn isr_change(&mut self, now_ms: i64, lag_ms: i64, high_watermark: Offset, retry_ms: i64) -> Option<IsrChange> {
        let epoch_start = self.epoch_start;
        if self.change_asked_ms.is_some_and(|at| now_ms - at < retry_ms) {
            return None;
        }
        let local = self.assignment.local;
        let lagging: Vec<ReplicaId> = self
            .assignment
            .isr
            .iter()
            .copied()
            .filter(|&r| r != local)
            .filter(|r| self.followers.get(r).map_or(true, |f| now_ms - f.caught_up_ms > lag_ms))
            .collect();
        let joining: Vec<ReplicaId> = self
            .followers
            .iter()
            .filter(|(r, _)| !self.assignment.isr.contains(r))
            .filter(|(_, f)| f.log_end.is_some_and(|end| end >= high_watermark && end >= epoch_start))
            .filter(|(_, f)| now_ms - f.caught_up_ms <= lag_ms)
            .map(|(&r, _)| r)
            .collect();
        if lagging.is_empty() && joining.is_empty() {
            return None;
        }
        let mut isr: Vec<ReplicaId> = self
            .assignment
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .chain(joining.iter().copied())
            .collect();
        if !isr.contains(&local) {
            isr.insert(0, local);
        }
        self.pending_add = joining;
        self.change_asked_ms = Some(now_ms);
        Some(IsrChange { leader_epoch: self.assignment.epoch, partition_epoch: self.assignment.partition_epoch, isr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(isr: &[i32]) -> LeaderAssignment {
        LeaderAssignment {
            local: 1,
            epoch: LeaderEpoch(3),
            partition_epoch: 7,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn high_watermark_is_the_least_log_end_over_the_isr() {
        let mut leader = LeaderState::new(assignment(&[1, 2, 3]), 0, Offset(10));
        // Nobody fetched yet: the high watermark stays where it was.
        assert_eq!(leader.high_watermark(Offset(10), Offset(4)), Offset(4));
        assert!(leader.on_fetch(2, Offset(10), Offset(10), 1));
        assert_eq!(leader.high_watermark(Offset(10), Offset(4)), Offset(4), "3 has not fetched");
        assert!(leader.on_fetch(3, Offset(7), Offset(10), 1));
        assert_eq!(leader.high_watermark(Offset(10), Offset(4)), Offset(7));
        assert!(!leader.on_fetch(9, Offset(7), Offset(10), 1), "not a replica");
        // A follower outside the ISR does not hold the high watermark.
        leader.update(assignment(&[1, 2]), 2, Offset(10));
        assert_eq!(leader.high_watermark(Offset(10), Offset(7)), Offset(10));
        // It never goes backwards.
        assert_eq!(leader.high_watermark(Offset(10), Offset(10)), Offset(10));
    }

    #[test]
    fn lagging_followers_leave_and_caught_up_ones_join() {
        let mut leader = LeaderState::new(assignment(&[1, 2, 3]), 0, Offset(0));
        leader.on_fetch(2, Offset(0), Offset(0), 100);
        assert_eq!(leader.isr_change(5_000, 10_000, Offset(0), 1_000), None);
        // 3 never fetched for longer than the lag limit; 2 keeps up.
        leader.on_fetch(2, Offset(0), Offset(0), 10_500);
        let change = leader.isr_change(10_600, 10_000, Offset(0), 1_000).expect("3 leaves");
        assert_eq!(change.isr, vec![1, 2]);
        assert_eq!((change.leader_epoch, change.partition_epoch), (LeaderEpoch(3), 7));
        assert_eq!(leader.isr_change(10_700, 10_000, Offset(0), 1_000), None, "one change in flight");
        leader.update(LeaderAssignment { partition_epoch: 8, ..assignment(&[1, 2]) }, 10_800, Offset(5));
        // 3 fetches below the high watermark: not yet.
        leader.on_fetch(3, Offset(2), Offset(5), 11_000);
        assert_eq!(leader.isr_change(11_001, 10_000, Offset(5), 1_000), None);
        leader.on_fetch(3, Offset(5), Offset(5), 11_100);
        let change = leader.isr_change(11_101, 10_000, Offset(5), 1_000).expect("3 joins");
        assert_eq!(change.isr, vec![1, 2, 3]);
        assert_eq!(leader.pending_add, vec![3]);
        // While the join is asked for, 3 already holds the high watermark.
        assert_eq!(leader.high_watermark(Offset(9), Offset(5)), Offset(5));
    }

    #[test]
    fn caught_up_follows_kafkas_rule() {
        let mut leader = LeaderState::new(assignment(&[1, 2, 3]), 0, Offset(0));
        leader.on_fetch(2, Offset(0), Offset(10), 100); // behind: not caught up
        assert_eq!(leader.followers[&2].caught_up_ms, 0);
        leader.on_fetch(2, Offset(10), Offset(20), 200); // reaches what the leader had at 100
        assert_eq!(leader.followers[&2].caught_up_ms, 100);
        leader.on_fetch(2, Offset(20), Offset(20), 300);
        assert_eq!(leader.followers[&2].caught_up_ms, 300);
    }
}
