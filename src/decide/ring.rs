//! One instance's recent `memory_total` samples — the trend's input — in 8
//! bytes a sample instead of 24, with the figures the decision reads
//! unchanged.
//!
//! Why: 10,000 dynos × an hour of samples (180) × 24 bytes was 43 MB, most
//! of dynoguard's memory. Logplex stamps carry microseconds and Heroku's
//! figures two decimals (`512.34MB`), so a sample packs exactly into a
//! `u32` of microseconds after a base and a `u32` of hundredths of a MB.
//! Whatever does not pack exactly (a stamp with nanoseconds, a figure with
//! more decimals, over 42 TB) turns this instance's ring into the wide form,
//! which holds the values as they came: the figures are the same either way.
//!
//! The base moves forward when the newest sample no longer fits
//! ([`REBASE_TO`] before it); a sample older than the new base keeps its
//! value and reads as the base's time. That loses nothing the trend reads:
//! the trend measures time only inside its window (at most an hour, and the
//! base is always more than an hour before the newest sample); older samples
//! count only by value, in the "new high" check.

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};

/// Samples kept per instance: an hour of 20-second samples.
pub const HISTORY: usize = 180;

/// After a rebase the newest sample sits this long after the base: longer
/// than the longest `predict_window` (1 h), so a sample read at the base's
/// time is outside every window, and short of the span a `u32` of
/// microseconds holds (71.6 min), so a rebase happens every few minutes.
const REBASE_TO: SignedDuration = SignedDuration::from_mins(65);

/// An instance's samples, oldest first; times strictly increase (a sample
/// not newer than the last is stale and never recorded).
#[derive(Debug, Clone)]
pub struct SampleRing(Form);

#[derive(Debug, Clone)]
enum Form {
    /// `(microseconds after base, hundredths of a MB)`.
    Packed {
        base: Timestamp,
        slots: VecDeque<(u32, u32)>,
    },
    Wide(VecDeque<(Timestamp, f64)>),
}

impl Default for SampleRing {
    fn default() -> Self {
        Self(Form::Packed {
            base: Timestamp::UNIX_EPOCH,
            slots: VecDeque::new(),
        })
    }
}

/// `mb` as hundredths, if that gives back exactly `mb`.
fn pack_mb(mb: f64) -> Option<u32> {
    let hundredths = (mb * 100.0).round();
    if !(0.0..=f64::from(u32::MAX)).contains(&hundredths) {
        return None;
    }
    let n = hundredths as u32;
    (unpack_mb(n).to_bits() == mb.to_bits()).then_some(n)
}

/// Correctly rounded, like parsing the decimal `n / 100` (issue 21's
/// `Megabytes::parse` gives the same bits for `NNN.NN`).
fn unpack_mb(n: u32) -> f64 {
    f64::from(n) / 100.0
}

/// Microseconds from `base` to `at`, if exact and within a `u32`.
fn pack_at(base: Timestamp, at: Timestamp) -> Option<u32> {
    let d = at.duration_since(base);
    if d.is_negative() || d.subsec_nanos() % 1_000 != 0 {
        return None;
    }
    u32::try_from(d.as_micros()).ok()
}

fn unpack_at(base: Timestamp, us: u32) -> Timestamp {
    base + SignedDuration::from_micros(i64::from(us))
}

/// Takes exactly [`HISTORY`] slots at the first sample and drops the oldest
/// when full. One allocation of the final size: growing by doubling freed
/// a block at each step (8 … 128 slots), and at 10,000 dynos the freed
/// blocks stayed in the allocator as tens of MB of resident memory; a
/// doubling would also end at 256 slots.
fn make_room<T>(v: &mut VecDeque<T>) {
    if v.len() == HISTORY {
        v.pop_front();
    } else if v.capacity() < HISTORY {
        v.reserve_exact(HISTORY - v.len());
    }
}

impl SampleRing {
    pub fn len(&self) -> usize {
        match &self.0 {
            Form::Packed { slots, .. } => slots.len(),
            Form::Wide(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots allocated (bounded by [`HISTORY`]).
    pub fn capacity(&self) -> usize {
        match &self.0 {
            Form::Packed { slots, .. } => slots.capacity(),
            Form::Wide(v) => v.capacity(),
        }
    }

    /// A new instance: nothing of the old one's trend is kept.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The newest sample.
    pub fn last(&self) -> Option<(Timestamp, f64)> {
        self.iter().next_back()
    }

    /// `(at, memory_total MB)`, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (Timestamp, f64)> + '_ {
        let (packed, wide) = match &self.0 {
            Form::Packed { base, slots } => (
                Some(
                    slots
                        .iter()
                        .map(|&(us, mb)| (unpack_at(*base, us), unpack_mb(mb))),
                ),
                None,
            ),
            Form::Wide(v) => (None, Some(v.iter().copied())),
        };
        packed
            .into_iter()
            .flatten()
            .chain(wide.into_iter().flatten())
    }

    /// Appends a sample newer than the last one.
    pub fn push(&mut self, at: Timestamp, mb: f64) {
        if let Form::Packed { base, slots } = &mut self.0 {
            if slots.is_empty() {
                *base = at;
            }
            let Some(n) = pack_mb(mb) else {
                return self.widen_and_push(at, mb);
            };
            let us = match pack_at(*base, at) {
                Some(us) => us,
                None => match Self::rebase(base, slots, at) {
                    Some(us) => us,
                    None => return self.widen_and_push(at, mb),
                },
            };
            make_room(slots);
            slots.push_back((us, n));
            return;
        }
        if let Form::Wide(v) = &mut self.0 {
            make_room(v);
            v.push_back((at, mb));
        }
    }

    /// Moves `base` to [`REBASE_TO`] before `at` (never backwards) and
    /// re-expresses every slot; a slot before the new base reads as the
    /// base. `None` (the caller widens) if the base would not move by whole
    /// microseconds (a stamp whose sub-microsecond digits differ from the
    /// base's: every slot would shift) or would leave jiff's range.
    fn rebase(
        base: &mut Timestamp,
        slots: &mut VecDeque<(u32, u32)>,
        at: Timestamp,
    ) -> Option<u32> {
        let new_base = at.checked_sub(REBASE_TO).ok()?;
        let moved = new_base.duration_since(*base);
        if moved <= SignedDuration::ZERO || moved.subsec_nanos() % 1_000 != 0 {
            return None;
        }
        let us = pack_at(new_base, at)?;
        let shift = moved.as_micros();
        for (t, _) in slots.iter_mut() {
            *t = u32::try_from((i128::from(*t) - shift).max(0)).unwrap_or(0);
        }
        *base = new_base;
        Some(us)
    }

    fn widen_and_push(&mut self, at: Timestamp, mb: f64) {
        let drop = (self.len() + 1).saturating_sub(HISTORY);
        let mut v: VecDeque<(Timestamp, f64)> = VecDeque::with_capacity(HISTORY);
        v.extend(self.iter().skip(drop));
        v.push_back((at, mb));
        self.0 = Form::Wide(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(us: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000).expect("valid") + SignedDuration::from_micros(us)
    }

    #[test]
    fn heroku_figures_pack_exactly() {
        for s in [
            "0.00", "0.01", "512.34", "1023.99", "14336.00", "99999.99", "0.5",
        ] {
            let mb: f64 = s.parse().expect("number");
            let n = pack_mb(mb).expect(s);
            assert_eq!(unpack_mb(n).to_bits(), mb.to_bits(), "{s}");
        }
        assert_eq!(pack_mb(512.345), None);
        assert_eq!(pack_mb(-1.0), None);
        assert_eq!(pack_mb(f64::NAN), None);
        assert_eq!(pack_mb(1e12), None);
    }

    #[test]
    fn an_hour_keeps_history_slots_and_reads_back_exactly() {
        let mut r = SampleRing::default();
        let mut want = VecDeque::new();
        for i in 0..1_000i64 {
            // Jittered microseconds, 20 s apart: rebases every few minutes.
            let at = t(20_000_000 * i + (i * 7_919) % 1_000_000);
            let mb = (10_000 + i % 997) as f64 / 100.0;
            r.push(at, mb);
            if want.len() == HISTORY {
                want.pop_front();
            }
            want.push_back((at, mb));
            assert!(r.capacity() <= HISTORY, "{i}: {} {}", r.len(), r.capacity());
        }
        assert!(matches!(r.0, Form::Packed { .. }));
        let got: Vec<_> = r.iter().collect();
        assert_eq!(got, Vec::from(want));
    }

    #[test]
    fn a_long_gap_clamps_only_samples_outside_every_window() {
        let mut r = SampleRing::default();
        r.push(t(0), 300.0);
        r.push(t(20_000_000), 310.0);
        // Three hours later: the first two read as the base, 65 min before.
        let late = t(3 * 3_600_000_000);
        r.push(late, 320.0);
        let got: Vec<_> = r.iter().collect();
        assert_eq!(got[2], (late, 320.0));
        for (at, _) in &got[..2] {
            assert_eq!(*at, late - REBASE_TO);
            assert!(*at < late - SignedDuration::from_hours(1));
        }
        assert_eq!((got[0].1, got[1].1), (300.0, 310.0));
    }

    #[test]
    fn what_does_not_pack_is_kept_wide_and_exact() {
        let mut r = SampleRing::default();
        r.push(t(0), 300.25);
        r.push(t(20_000_000) + SignedDuration::from_nanos(1), 301.0);
        r.push(t(40_000_000), 302.125);
        assert!(matches!(r.0, Form::Wide(_)));
        let got: Vec<_> = r.iter().collect();
        assert_eq!(
            got,
            vec![
                (t(0), 300.25),
                (t(20_000_000) + SignedDuration::from_nanos(1), 301.0),
                (t(40_000_000), 302.125),
            ]
        );
        r.clear();
        r.push(t(60_000_000), 1.5);
        assert!(matches!(r.0, Form::Packed { .. }));
        assert_eq!(r.last(), Some((t(60_000_000), 1.5)));
    }

    #[test]
    fn widening_a_full_ring_keeps_history_slots() {
        let mut r = SampleRing::default();
        for i in 0..HISTORY as i64 {
            r.push(t(20_000_000 * i), 200.0);
        }
        r.push(t(20_000_000 * HISTORY as i64), 200.125);
        assert!(matches!(r.0, Form::Wide(_)));
        assert_eq!((r.len(), r.capacity()), (HISTORY, HISTORY));
        assert_eq!(r.iter().next(), Some((t(20_000_000), 200.0)));
    }

    #[test]
    fn a_rebase_by_a_sub_microsecond_stamp_widens_instead_of_shifting() {
        let mut r = SampleRing::default();
        r.push(t(0), 300.0);
        let odd = t(66 * 60_000_000) + SignedDuration::from_nanos(500);
        r.push(odd, 301.0);
        assert!(matches!(r.0, Form::Wide(_)));
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![(t(0), 300.0), (odd, 301.0)]
        );
    }

    #[test]
    fn a_stamp_at_the_start_of_time_does_not_panic() {
        let mut r = SampleRing::default();
        let first = Timestamp::MIN + SignedDuration::from_hours(1);
        r.push(first, 300.0);
        let second = first + SignedDuration::from_nanos(20_000_000_001);
        r.push(second, 301.0);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![(first, 300.0), (second, 301.0)]
        );
    }

    proptest! {
        /// Any increasing samples read back exactly, except that a time
        /// more than an hour before the newest may read as a later time
        /// that is still more than an hour before it.
        #[test]
        fn reads_back_what_the_trend_needs(
            steps in proptest::collection::vec((1i64..200_000_000_000, 0u32..2_000_000, 0u8..10, 0u16..1000), 1..400)
        ) {
            let mut r = SampleRing::default();
            let mut want: VecDeque<(Timestamp, f64)> = VecDeque::new();
            let mut now = t(0);
            for (gap_ns, hundredths, odd_ns, odd_mb) in steps {
                // Rarely an odd stamp, more rarely an odd figure: the ring
                // stays packed long enough to rebase.
                let (odd_ns, odd_mb) = (odd_ns == 0, odd_mb == 0);
                now += SignedDuration::from_nanos(if odd_ns { gap_ns } else { gap_ns / 1000 * 1000 + 1000 });
                let mb = f64::from(hundredths) / 100.0 + if odd_mb { 0.001 } else { 0.0 };
                r.push(now, mb);
                if want.len() == HISTORY {
                    want.pop_front();
                }
                want.push_back((now, mb));
            }
            let got: Vec<_> = r.iter().collect();
            prop_assert_eq!(got.len(), want.len());
            let newest = want.back().map(|w| w.0).unwrap_or(now);
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(g.1.to_bits(), w.1.to_bits());
                if g.0 != w.0 {
                    prop_assert!(g.0 > w.0);
                    prop_assert!(g.0 < newest - SignedDuration::from_hours(1));
                }
            }
        }
    }
}
