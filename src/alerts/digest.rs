//! Digests: at most one message per alert, kind and job per interval. The
//! first event goes at once; what follows within the interval is held and
//! goes as one message with its count when the interval ends. Pure state,
//! driven by the dispatcher's clock, so it is tested without waiting.

use super::{Event, Message};
use crate::config::AlertKind;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Events kept as samples in one digest (the count has them all).
pub const SAMPLES: usize = 5;

/// One alert's digests, by (kind, job).
#[derive(Debug, Default)]
pub struct Digests {
    open: HashMap<(AlertKind, String), Open>,
}

#[derive(Debug)]
struct Open {
    /// When the last message for this kind and job went out.
    sent_at: Instant,
    /// Events since then: how many, and the first few and the last.
    held: u64,
    samples: Vec<Event>,
}

impl Digests {
    /// Takes `event` at `now`: the message to send at once (the first of
    /// its kind and job in `every`), or `None` when it is held for the
    /// digest.
    pub fn take(&mut self, event: Event, now: Instant, every: Duration) -> Option<Message> {
        let key = (event.kind, event.job.clone());
        match self.open.get_mut(&key) {
            Some(open) if now.duration_since(open.sent_at) < every => {
                open.held += 1;
                if open.samples.len() < SAMPLES {
                    open.samples.push(event);
                } else if let Some(last) = open.samples.last_mut() {
                    *last = event; // the newest stays visible
                }
                None
            }
            _ => {
                self.open.insert(
                    key,
                    Open {
                        sent_at: now,
                        held: 0,
                        samples: Vec::new(),
                    },
                );
                Some(Message::new(vec![event], 1, None))
            }
        }
    }

    /// The digests whose interval has ended by `now`, each as one message
    /// with its count; kinds and jobs with nothing held are forgotten once
    /// their interval ends, so the next event goes at once again.
    pub fn due(&mut self, now: Instant, every: Duration) -> Vec<Message> {
        let mut out = Vec::new();
        self.open.retain(|_, open| {
            if now.duration_since(open.sent_at) < every {
                return true;
            }
            if open.held == 0 {
                return false;
            }
            out.push(Message::new(
                std::mem::take(&mut open.samples),
                open.held,
                Some(every),
            ));
            open.held = 0;
            open.sent_at = now;
            true
        });
        out
    }

    /// Everything held, now (at shutdown).
    pub fn drain(&mut self, every: Duration) -> Vec<Message> {
        self.open
            .drain()
            .filter(|(_, o)| o.held > 0)
            .map(|(_, o)| Message::new(o.samples, o.held, Some(every)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: AlertKind, job: &str, subject: &str) -> Event {
        Event::new(kind, job, subject, "detail")
    }

    #[test]
    fn the_first_goes_at_once_the_rest_as_one_digest_per_interval() {
        let mut d = Digests::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(600);
        assert!(
            d.take(ev(AlertKind::FileFailed, "j", "/a"), t0, every)
                .is_some()
        );
        for i in 0..12 {
            let later = t0 + Duration::from_secs(10 + i);
            assert!(
                d.take(
                    ev(AlertKind::FileFailed, "j", &format!("/b{i}")),
                    later,
                    every
                )
                .is_none()
            );
        }
        // Another job and another kind have digests of their own.
        assert!(
            d.take(ev(AlertKind::FileFailed, "k", "/c"), t0, every)
                .is_some()
        );
        assert!(
            d.take(ev(AlertKind::Rejects, "j", "/d"), t0, every)
                .is_some()
        );
        assert!(d.due(t0 + Duration::from_secs(599), every).is_empty());
        let due = d.due(t0 + every, every);
        assert_eq!(due.len(), 1, "only (file_failed, j) held anything");
        assert_eq!(due[0].count, 12);
        assert_eq!(due[0].events.len(), SAMPLES);
        assert_eq!(
            due[0].events.last().unwrap().subject,
            "/b11",
            "the newest is kept"
        );
        // Within the next interval: held again; after a quiet one: at once.
        assert!(
            d.take(
                ev(AlertKind::FileFailed, "j", "/e"),
                t0 + every + Duration::from_secs(1),
                every
            )
            .is_none()
        );
        assert_eq!(d.due(t0 + every * 2, every)[0].count, 1);
        assert!(d.due(t0 + every * 3, every).is_empty());
        assert!(
            d.take(ev(AlertKind::FileFailed, "j", "/f"), t0 + every * 3, every)
                .is_some()
        );
    }

    #[test]
    fn shutdown_sends_what_is_held() {
        let mut d = Digests::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(60);
        d.take(ev(AlertKind::Lag, "j", "lag"), t0, every);
        d.take(ev(AlertKind::Lag, "j", "lag"), t0, every);
        d.take(ev(AlertKind::SourceDown, "j", "s"), t0, every);
        let left = d.drain(every);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].count, 1);
    }
}
