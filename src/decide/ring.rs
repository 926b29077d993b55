//! One instance's recent `memory_total` samples — the trend's input — held
//! in as little memory as the decision allows, with the figures it reads
//! unchanged.
//!
//! The trend reads two things (see `policy::predicted_crossing`): every
//! sample inside `predict_window` (times and values), and, of the older
//! samples among the instance's last [`HISTORY`], only whether one reached a
//! level — their maximum. So the ring keeps the window's samples and, for the
//! older ones, only the decreasing run of maxima (a sliding-window maximum:
//! each entry is the largest aged sample from it on); a leak's climbing
//! samples leave one entry. At 10,000 dynos an hour of samples was 14 MB;
//! the window (ten minutes by default) and a few maxima are about a third of it.
//!
//! Inside the window a sample takes 8 bytes instead of 24: Logplex stamps
//! carry microseconds and Heroku's figures two decimals (`512.34MB`), so a
//! sample packs exactly into a `u32` of microseconds after a base and a
//! `u32` of hundredths of a MB. Whatever does not pack exactly (a stamp with
//! nanoseconds, a figure with more decimals, over 42 TB) turns this
//! instance's window into the wide form, which holds the values as they
//! came: the figures are the same either way.
//!
//! The base moves forward when the newest sample no longer fits
//! ([`REBASE_TO`] before it); a sample older than the new base keeps its
//! value and reads as the base's time. That loses nothing the trend reads:
//! the window is at most an hour, and the base is always more than an hour
//! before the newest sample.

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};

/// Samples the trend looks back over per instance: an hour of 20-second
/// samples. Inside the window each is kept; older ones count by value only.
pub const HISTORY: usize = 180;

/// Heroku's runtime-metrics interval: the window is sized for it at the
/// first sample (and grows once, to [`HISTORY`], if samples come faster).
const SAMPLE_EVERY_SECS: i64 = 20;

/// After a rebase the newest sample sits this long after the base: longer
/// than the longest `predict_window` (1 h), so a sample read at the base's
/// time is outside every window, and short of the span a `u32` of
/// microseconds holds (71.6 min), so a rebase happens every few minutes.
const REBASE_TO: SignedDuration = SignedDuration::from_mins(65);

/// An instance's samples; times strictly increase (a sample not newer than
/// the last is stale and never recorded).
#[derive(Debug, Clone, Default)]
pub struct SampleRing {
    /// The samples inside the window, oldest first.
    window: Form,
    /// The samples that left the window, among the last [`HISTORY`]: the
    /// decreasing maxima `(sequence number, MB)`, oldest first.
    aged: VecDeque<(u64, f64)>,
    /// Samples pushed since the instance began: the next one's number.
    pushed: u64,
}

#[derive(Debug, Clone)]
enum Form {
    /// `(microseconds after base, hundredths of a MB)`.
    Packed {
        base: Timestamp,
        slots: VecDeque<(u32, u32)>,
    },
    Wide(VecDeque<(Timestamp, f64)>),
}

impl Default for Form {
    fn default() -> Self {
        Form::Packed {
            base: Timestamp::UNIX_EPOCH,
            slots: VecDeque::new(),
        }
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

/// Slots for a window's samples, taken at the first sample: one allocation
/// of the size the window needs (growing by doubling freed a block at each
/// step, and at 10,000 dynos freed blocks stayed resident); samples faster
/// than Heroku's interval grow it once, to [`HISTORY`].
fn slots_for(window: SignedDuration) -> usize {
    let n = window.as_secs().max(0) / SAMPLE_EVERY_SECS + 3;
    usize::try_from(n).unwrap_or(HISTORY).min(HISTORY)
}

/// Room for one more slot: the oldest goes when [`HISTORY`] are held (it is
/// no longer among the last [`HISTORY`]).
fn make_room<T>(v: &mut VecDeque<T>, window: SignedDuration) -> Option<T> {
    if v.len() == HISTORY {
        return v.pop_front();
    }
    if v.capacity() == 0 {
        v.reserve_exact(slots_for(window));
    } else if v.len() == v.capacity() {
        v.reserve_exact(HISTORY - v.len());
    }
    None
}

impl SampleRing {
    /// Samples inside the window.
    pub fn len(&self) -> usize {
        match &self.window {
            Form::Packed { slots, .. } => slots.len(),
            Form::Wide(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots allocated for the window and the aged maxima.
    pub fn capacity(&self) -> usize {
        let window = match &self.window {
            Form::Packed { slots, .. } => slots.capacity(),
            Form::Wide(v) => v.capacity(),
        };
        window + self.aged.capacity()
    }

    /// A new instance: nothing of the old one's trend is kept.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The oldest sample inside the window.
    fn first(&self) -> Option<(Timestamp, f64)> {
        self.iter().next()
    }

    /// The newest sample.
    pub fn last(&self) -> Option<(Timestamp, f64)> {
        self.iter().next_back()
    }

    /// The samples inside the window, `(at, memory_total MB)`, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (Timestamp, f64)> + '_ {
        let (packed, wide) = match &self.window {
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

    /// The largest sample that left the window, among the last [`HISTORY`].
    pub fn aged_max(&self) -> Option<f64> {
        self.aged.front().map(|&(_, mb)| mb)
    }

    /// Appends a sample newer than the last one; samples more than `window`
    /// before it leave the window (only their maximum is kept).
    pub fn push(&mut self, at: Timestamp, mb: f64, window: SignedDuration) {
        self.push_in_window(at, mb, window);
        self.pushed += 1;
        if let Ok(cutoff) = at.checked_sub(window) {
            while let Some((_, y)) = self.first().filter(|&(t, _)| t < cutoff) {
                let seq = self.pushed - self.len() as u64;
                self.pop_front();
                self.age(seq, y);
            }
        }
        let keep_from = self.pushed.saturating_sub(HISTORY as u64);
        while self.aged.front().is_some_and(|&(seq, _)| seq < keep_from) {
            self.aged.pop_front();
        }
    }

    /// A sample that left the window: it ends every smaller maximum.
    fn age(&mut self, seq: u64, mb: f64) {
        while self.aged.back().is_some_and(|&(_, y)| y <= mb) {
            self.aged.pop_back();
        }
        self.aged.push_back((seq, mb));
    }

    fn pop_front(&mut self) {
        match &mut self.window {
            Form::Packed { slots, .. } => {
                slots.pop_front();
            }
            Form::Wide(v) => {
                v.pop_front();
            }
        }
    }

    fn push_in_window(&mut self, at: Timestamp, mb: f64, window: SignedDuration) {
        if let Form::Packed { base, slots } = &mut self.window {
            if slots.is_empty() {
                *base = at;
            }
            let Some(n) = pack_mb(mb) else {
                return self.widen_and_push(at, mb, window);
            };
            let us = match pack_at(*base, at) {
                Some(us) => us,
                None => match Self::rebase(base, slots, at) {
                    Some(us) => us,
                    None => return self.widen_and_push(at, mb, window),
                },
            };
            make_room(slots, window);
            slots.push_back((us, n));
            return;
        }
        if let Form::Wide(v) = &mut self.window {
            make_room(v, window);
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

    fn widen_and_push(&mut self, at: Timestamp, mb: f64, window: SignedDuration) {
        let mut v: VecDeque<(Timestamp, f64)> =
            VecDeque::with_capacity(self.len().max(slots_for(window)));
        v.extend(self.iter());
        make_room(&mut v, window);
        v.push_back((at, mb));
        self.window = Form::Wide(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: SignedDuration = SignedDuration::from_hours(1);
    const TEN_MIN: SignedDuration = SignedDuration::from_mins(10);

    fn t(us: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000).expect("valid") + SignedDuration::from_micros(us)
    }

    /// What the trend reads, computed the plain way from every sample:
    /// the last [`HISTORY`], split at `window` before the newest.
    struct Model(VecDeque<(Timestamp, f64)>);

    impl Model {
        fn push(&mut self, at: Timestamp, mb: f64) {
            if self.0.len() == HISTORY {
                self.0.pop_front();
            }
            self.0.push_back((at, mb));
        }

        fn cutoff(&self, window: SignedDuration) -> Option<Timestamp> {
            self.0
                .back()
                .and_then(|(at, _)| at.checked_sub(window).ok())
        }

        fn window(&self, window: SignedDuration) -> Vec<(Timestamp, f64)> {
            let c = self.cutoff(window);
            self.0
                .iter()
                .copied()
                .filter(|(at, _)| c.is_none_or(|c| *at >= c))
                .collect()
        }

        fn aged_max(&self, window: SignedDuration) -> Option<f64> {
            let c = self.cutoff(window)?;
            self.0
                .iter()
                .filter(|(at, _)| *at < c)
                .map(|(_, mb)| *mb)
                .reduce(f64::max)
        }
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
    fn a_window_of_samples_is_one_allocation_of_its_size() {
        let mut r = SampleRing::default();
        let mut m = Model(VecDeque::new());
        for i in 0..1_000i64 {
            // Jittered microseconds, 20 s apart: rebases every few minutes.
            let at = t(20_000_000 * i + (i * 7_919) % 1_000_000);
            // A sawtooth: aged maxima come and go.
            let mb = (10_000 + (i * 37) % 997) as f64 / 100.0;
            r.push(at, mb, TEN_MIN);
            m.push(at, mb);
            assert_eq!(r.iter().collect::<Vec<_>>(), m.window(TEN_MIN), "{i}");
            assert_eq!(r.aged_max(), m.aged_max(TEN_MIN), "{i}");
        }
        assert!(matches!(r.window, Form::Packed { .. }));
        // Ten minutes of jittered 20-s samples (30 or 31) in 33 slots, not
        // an hour's 180.
        assert!((30..=31).contains(&r.len()), "{}", r.len());
        assert!(r.capacity() <= 33 + 32, "{}", r.capacity());
    }

    #[test]
    fn samples_faster_than_heroku_s_grow_the_window_once_and_keep_history() {
        let mut r = SampleRing::default();
        let mut m = Model(VecDeque::new());
        for i in 0..1_000i64 {
            let at = t(5_000_000 * i);
            r.push(at, 200.0 + i as f64, HOUR);
            m.push(at, 200.0 + i as f64);
        }
        assert_eq!(r.iter().collect::<Vec<_>>(), m.window(HOUR));
        assert_eq!((r.len(), r.capacity()), (HISTORY, HISTORY));
        assert_eq!(r.aged_max(), None);
    }

    #[test]
    fn a_long_gap_ages_everything_but_the_newest() {
        let mut r = SampleRing::default();
        r.push(t(0), 300.0, HOUR);
        r.push(t(20_000_000), 310.0, HOUR);
        let late = t(3 * 3_600_000_000);
        r.push(late, 305.0, HOUR);
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(late, 305.0)]);
        assert_eq!(r.aged_max(), Some(310.0));
    }

    #[test]
    fn what_does_not_pack_is_kept_wide_and_exact() {
        let mut r = SampleRing::default();
        r.push(t(0), 300.25, HOUR);
        r.push(t(20_000_000) + SignedDuration::from_nanos(1), 301.0, HOUR);
        r.push(t(40_000_000), 302.125, HOUR);
        assert!(matches!(r.window, Form::Wide(_)));
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
        r.push(t(60_000_000), 1.5, HOUR);
        assert!(matches!(r.window, Form::Packed { .. }));
        assert_eq!(r.last(), Some((t(60_000_000), 1.5)));
        assert_eq!(r.aged_max(), None);
    }

    #[test]
    fn widening_a_full_window_keeps_history_slots() {
        let mut r = SampleRing::default();
        for i in 0..HISTORY as i64 {
            r.push(t(10_000_000 * i), 200.0, HOUR);
        }
        r.push(t(10_000_000 * HISTORY as i64), 200.125, HOUR);
        assert!(matches!(r.window, Form::Wide(_)));
        assert_eq!((r.len(), r.capacity()), (HISTORY, HISTORY));
        assert_eq!(r.iter().next(), Some((t(10_000_000), 200.0)));
    }

    #[test]
    fn a_rebase_by_a_sub_microsecond_stamp_widens_instead_of_shifting() {
        let mut r = SampleRing::default();
        r.push(t(0), 300.0, HOUR);
        r.push(t(30 * 60_000_000), 300.5, HOUR);
        let odd = t(66 * 60_000_000) + SignedDuration::from_nanos(500);
        r.push(odd, 301.0, HOUR);
        assert!(matches!(r.window, Form::Wide(_)));
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![(t(30 * 60_000_000), 300.5), (odd, 301.0)]
        );
        assert_eq!(r.aged_max(), Some(300.0));
    }

    #[test]
    fn a_stamp_at_the_start_of_time_does_not_panic() {
        let mut r = SampleRing::default();
        let first = Timestamp::MIN + SignedDuration::from_hours(1);
        r.push(first, 300.0, HOUR);
        let second = first + SignedDuration::from_nanos(20_000_000_001);
        r.push(second, 301.0, HOUR);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![(first, 300.0), (second, 301.0)]
        );
    }

    proptest! {
        /// Whatever the samples and the window, the ring reads exactly what
        /// the plain model does: the window's samples (times and figures, to
        /// the bit) and the maximum of the older ones among the last
        /// [`HISTORY`].
        #[test]
        fn reads_what_the_trend_reads(
            window_s in 120i64..=3_600,
            steps in proptest::collection::vec((1i64..400_000_000_000, 0u32..2_000_000, 0u8..10, 0u16..1000), 1..500)
        ) {
            let window = SignedDuration::from_secs(window_s);
            let mut r = SampleRing::default();
            let mut m = Model(VecDeque::new());
            let mut now = t(0);
            for (gap_ns, hundredths, odd_ns, odd_mb) in steps {
                // Mostly 20-s-ish gaps; rarely an odd stamp, more rarely an
                // odd figure: the window stays packed long enough to rebase.
                let (odd_ns, odd_mb) = (odd_ns == 0, odd_mb == 0);
                let gap = if gap_ns % 4 == 0 { gap_ns } else { gap_ns % 40_000_000_000 + 1 };
                now += SignedDuration::from_nanos(if odd_ns { gap } else { gap / 1000 * 1000 + 1000 });
                let mb = f64::from(hundredths) / 100.0 + if odd_mb { 0.001 } else { 0.0 };
                r.push(now, mb, window);
                m.push(now, mb);
                let got: Vec<_> = r.iter().collect();
                let want = m.window(window);
                prop_assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    prop_assert_eq!(g.0, w.0);
                    prop_assert_eq!(g.1.to_bits(), w.1.to_bits());
                }
                prop_assert_eq!(r.aged_max().map(f64::to_bits), m.aged_max(window).map(f64::to_bits));
                prop_assert!(r.len() <= HISTORY);
            }
        }
    }
}
