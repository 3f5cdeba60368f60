//! Whether an event is on air: the one switch for who may watch and what is recorded.
//!
//! Pure. The shell tells the SFU the event's status as the database has it, from three
//! directions that may arrive in any order: a status change on this node, the same
//! change from another node over the bus, and the status a WHIP/WHEP request read just
//! before it reached the SFU (which may be a moment stale). [`AirState::supersedes`]
//! orders them, so a stale read never undoes an end, and a reopen (a newer change) does.

/// What the event's status means for its media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Air {
    /// Scheduled: the broadcaster may publish, only the event's staff may watch, nothing
    /// is recorded into the public replay.
    Rehearsal,
    /// Live: everyone may watch, the publisher is recorded.
    Live,
    /// Ended: no publisher, no viewers, no recording.
    Ended,
}

impl Air {
    /// Later in the lifecycle wins a tie between two changes stamped the same instant.
    fn rank(self) -> u8 {
        match self {
            Air::Rehearsal => 0,
            Air::Live => 1,
            Air::Ended => 2,
        }
    }
}

/// An [`Air`] and when the event entered it (Unix milliseconds of the status change:
/// creation for a scheduled event, start or reopen for live, end for ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AirState {
    pub air: Air,
    pub since_ms: i64,
}

impl AirState {
    pub fn new(air: Air, since_ms: i64) -> Self {
        Self { air, since_ms }
    }

    /// Whether `self` is newer news than `current`: a later change, or the same instant
    /// and later in the lifecycle. Equal states supersede nothing.
    pub fn supersedes(self, current: AirState) -> bool {
        self.since_ms > current.since_ms
            || (self.since_ms == current.since_ms && self.air.rank() > current.air.rank())
    }

    /// Whether `audience` may watch now.
    pub fn admits(self, audience: Audience) -> Result<(), Refusal> {
        match (self.air, audience) {
            (Air::Ended, _) => Err(Refusal::Ended),
            (Air::Rehearsal, Audience::Public) => Err(Refusal::NotLive),
            (Air::Rehearsal, Audience::Staff) | (Air::Live, _) => Ok(()),
        }
    }

    /// Whether a publisher may (re)connect now.
    pub fn admits_publisher(self) -> Result<(), Refusal> {
        match self.air {
            Air::Ended => Err(Refusal::Ended),
            Air::Rehearsal | Air::Live => Ok(()),
        }
    }

    /// Whether a publisher's media goes into the public replay.
    pub fn records(self) -> bool {
        self.air == Air::Live
    }
}

/// Who asks to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Anyone (with a viewer token, for unlisted events).
    Public,
    /// The event's staff, with a preview credential: they may watch a rehearsal.
    Staff,
}

/// Why a session is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The event has not started: only staff may watch.
    NotLive,
    /// The event has ended.
    Ended,
}

/// What changed when a new state was taken, for the SFU to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing the SFU must do (older news, or the same state).
    None,
    /// Recording starts for a running publisher (rehearsal went live, or a reopen).
    StartRecording,
    /// Every session closes and the recording ends.
    CloseAll,
}

/// The transition from `current` (none yet: `None`) when `next` arrives, and the state to
/// keep.
pub fn take(current: Option<AirState>, next: AirState) -> (AirState, Transition) {
    let Some(current) = current else {
        // First news of the event on this node: nothing runs yet that it could change.
        return (next, Transition::None);
    };
    if !next.supersedes(current) {
        return (current, Transition::None);
    }
    let transition = match (current.air, next.air) {
        (Air::Ended, _) | (_, Air::Rehearsal) => Transition::None,
        (_, Air::Ended) => Transition::CloseAll,
        (Air::Rehearsal, Air::Live) => Transition::StartRecording,
        (Air::Live, Air::Live) => Transition::None,
    };
    (next, transition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(air: Air, since_ms: i64) -> AirState {
        AirState::new(air, since_ms)
    }

    #[test]
    fn the_lifecycle_runs_forward_with_its_effects() {
        let (state, t) = take(None, at(Air::Rehearsal, 10));
        assert_eq!(t, Transition::None);
        let (state, t) = take(Some(state), at(Air::Live, 20));
        assert_eq!((state.air, t), (Air::Live, Transition::StartRecording));
        let (state, t) = take(Some(state), at(Air::Ended, 30));
        assert_eq!((state.air, t), (Air::Ended, Transition::CloseAll));
    }

    #[test]
    fn a_stale_read_never_undoes_an_end() {
        // A WHEP request read "live, since 20" just before the end at 30 was stored.
        let ended = at(Air::Ended, 30);
        let (state, t) = take(Some(ended), at(Air::Live, 20));
        assert_eq!((state, t), (ended, Transition::None));
        // Nor a rehearsal read from before the start.
        let (state, _) = take(Some(at(Air::Live, 20)), at(Air::Rehearsal, 10));
        assert_eq!(state.air, Air::Live);
    }

    #[test]
    fn a_reopen_is_newer_than_the_end_it_undoes() {
        let (state, t) = take(Some(at(Air::Ended, 30)), at(Air::Live, 40));
        // Nothing runs after an end, so there is no recording to start: the next
        // publisher is recorded because the state is live when it arrives.
        assert_eq!((state.air, t), (Air::Live, Transition::None));
        assert!(state.records());
    }

    #[test]
    fn the_same_instant_goes_to_the_later_step() {
        assert!(at(Air::Ended, 5).supersedes(at(Air::Live, 5)));
        assert!(!at(Air::Live, 5).supersedes(at(Air::Ended, 5)));
        assert!(!at(Air::Live, 5).supersedes(at(Air::Live, 5)));
    }

    #[test]
    fn who_may_watch_and_publish() {
        let rehearsal = at(Air::Rehearsal, 1);
        let live = at(Air::Live, 2);
        let ended = at(Air::Ended, 3);
        assert_eq!(rehearsal.admits(Audience::Public), Err(Refusal::NotLive));
        assert_eq!(rehearsal.admits(Audience::Staff), Ok(()));
        assert_eq!(live.admits(Audience::Public), Ok(()));
        assert_eq!(ended.admits(Audience::Staff), Err(Refusal::Ended));
        assert_eq!(rehearsal.admits_publisher(), Ok(()));
        assert_eq!(ended.admits_publisher(), Err(Refusal::Ended));
        assert!(!rehearsal.records() && live.records() && !ended.records());
    }
}
