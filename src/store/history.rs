//! Per-minute memory history (SPEC §10): one row per app, dyno and minute of
//! log time, merged from every batch and every replica, kept 7 days.
//!
//! The service folds samples into [`MinuteRow`]s in memory and writes them
//! in batches; reading groups minutes into wider buckets in SQL.
//!
//! `history_rollup` holds the same minutes summed into slots of
//! [`ROLLUP_MS`] (12 minutes, which divide the long ranges' buckets: 24 h in
//! 12-minute buckets, 7 days in 84-minute ones). Each slot is recomputed
//! from its minutes in the transaction that writes them, so it is always
//! their aggregate; a read in buckets of a multiple of 12 minutes takes the
//! whole slots of its range from there and only the minutes at its two ends
//! from `history` — 7 days of 100 dynos read 84,000 slots and a few thousand
//! minutes, not a million minutes — with the same figures.
//!
//! `instance_starts` bounds, for each app, dyno and instance, the minutes
//! written with that instance: `first_minute` (the lowest) and
//! `ends_before` (the end of the slot of the highest). Every minute of
//! `history` whose instance it is lies within them — widened in the
//! transaction that writes the minutes, deleted when the last of them is
//! pruned — so [`Store::instance_starts`] looks each instance's first minute
//! up in `history` there (one step of the primary key, as a rule) instead of
//! grouping every minute of the range.

use super::batch::{self, Batched};
use super::{Db, SampleRow, Store, StoreError, end_transaction};
use crate::domain::MemoryMb;

/// One dyno's minute: `memory_total` min/max/sum over `samples`, the
/// highest rss and swap, the latest quota and instance.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MinuteRow {
    pub app: String,
    pub dyno: String,
    /// Unix ms of the minute's start (log time).
    pub minute: i64,
    pub samples: i32,
    pub total_min: f64,
    pub total_max: f64,
    pub total_sum: f64,
    pub rss_max: Option<f64>,
    pub swap_max: Option<f64>,
    pub quota: Option<f64>,
    pub instance: Option<String>,
    /// Unix ms of the newest sample folded in (whose instance and quota win).
    pub last_at: i64,
}

const MINUTE_MS: i64 = 60_000;

/// The roll-up's granularity: 12 minutes (unix ms of a slot's start are a
/// multiple of it). The migrations that back-fill `history_rollup` spell it
/// out as `720000`.
pub const ROLLUP_MS: i64 = 12 * MINUTE_MS;

/// The slot (unix ms of its start) a minute belongs to, floored.
fn slot_of(minute: i64) -> i64 {
    minute.div_euclid(ROLLUP_MS) * ROLLUP_MS
}

/// The whole slots within `[from, to)`: `(first, end)` with `first < end`,
/// both slot starts, or none when no slot fits (or `from` is before 1970,
/// where SQL's truncating division would not floor).
fn whole_slots(from: i64, to: i64) -> Option<(i64, i64)> {
    if from < 0 {
        return None;
    }
    let first = from
        .div_euclid(ROLLUP_MS)
        .checked_add(i64::from(from.rem_euclid(ROLLUP_MS) != 0))?
        .checked_mul(ROLLUP_MS)?;
    let end = to.div_euclid(ROLLUP_MS) * ROLLUP_MS;
    (first < end).then_some((first, end))
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

impl MinuteRow {
    /// The minute of one sample (none without `memory_total`).
    pub fn of_sample(s: &SampleRow) -> Option<Self> {
        let mut row = Self::unnamed_of_sample(s)?;
        row.app.clone_from(&s.app);
        row.dyno.clone_from(&s.dyno);
        Some(row)
    }

    /// [`MinuteRow::of_sample`] with `app` and `dyno` left empty (nothing
    /// allocated for them): a buffer keyed by the names adds them when it
    /// hands the row out.
    pub fn unnamed_of_sample(s: &SampleRow) -> Option<Self> {
        let m = &s.memory;
        let total = m.total?;
        Some(Self {
            app: String::new(),
            dyno: String::new(),
            minute: Self::minute_of(s.at),
            samples: 1,
            total_min: total,
            total_max: total,
            total_sum: total,
            rss_max: m.rss,
            swap_max: m.swap,
            quota: m.quota,
            instance: s.instance.clone(),
            last_at: s.at,
        })
    }

    /// The minute (unix ms of its start) a sample at `at` belongs to.
    pub fn minute_of(at: i64) -> i64 {
        at.div_euclid(MINUTE_MS) * MINUTE_MS
    }

    /// `self.merge(MinuteRow::of_sample(s))` without building the row (no
    /// copies of the names): the ingest path folds every sample in. False,
    /// and nothing changed, for a sample without `memory_total`.
    pub fn merge_sample(&mut self, s: &SampleRow) -> bool {
        let m = &s.memory;
        let Some(total) = m.total else {
            return false;
        };
        self.samples = self.samples.saturating_add(1);
        self.total_min = self.total_min.min(total);
        self.total_max = self.total_max.max(total);
        self.total_sum += total;
        self.rss_max = max_opt(self.rss_max, m.rss);
        self.swap_max = max_opt(self.swap_max, m.swap);
        if s.at >= self.last_at {
            self.last_at = s.at;
            self.quota = m.quota.or(self.quota);
            if s.instance.is_some() && s.instance != self.instance {
                self.instance.clone_from(&s.instance);
            }
        }
        true
    }

    /// Folds another part of the same minute in (the SQL upsert does the same).
    pub fn merge(&mut self, o: MinuteRow) {
        self.samples = self.samples.saturating_add(o.samples);
        self.total_min = self.total_min.min(o.total_min);
        self.total_max = self.total_max.max(o.total_max);
        self.total_sum += o.total_sum;
        self.rss_max = max_opt(self.rss_max, o.rss_max);
        self.swap_max = max_opt(self.swap_max, o.swap_max);
        if o.last_at >= self.last_at {
            self.last_at = o.last_at;
            self.quota = o.quota.or(self.quota);
            self.instance = o.instance.or(self.instance.take());
        }
    }

    pub fn key(&self) -> (String, String, i64) {
        (self.app.clone(), self.dyno.clone(), self.minute)
    }
}

/// A bucket of history as read: one or more minutes of one dyno.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HistoryPoint {
    pub dyno: String,
    /// Unix ms of the bucket's start.
    pub t: i64,
    pub samples: i64,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub rss: Option<f64>,
    pub swap: Option<f64>,
    pub quota: Option<f64>,
}

/// When an instance of a dyno was first seen in the history.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct InstanceStart {
    pub dyno: String,
    pub instance: String,
    /// Unix ms of its first minute.
    pub since: i64,
}

/// A sample's figures as stored: the columns `total`, `rss`, `swap` and
/// `quota` of a row (`SampleRow` reads them flattened).
impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for MemoryMb
where
    &'static str: sqlx::ColumnIndex<R>,
    Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            total: row.try_get("total")?,
            rss: row.try_get("rss")?,
            swap: row.try_get("swap")?,
            quota: row.try_get("quota")?,
        })
    }
}

/// Minutes read and grouped into buckets.
// `* 1.0`: a floating division on both backends.
const MINUTES_SQL: &str = "SELECT dyno, (minute / $4) * $4 AS t, SUM(samples) AS samples, \
     MIN(total_min) AS min, SUM(total_sum) * 1.0 / SUM(samples) AS avg, MAX(total_max) AS max, \
     MAX(rss_max) AS rss, MAX(swap_max) AS swap, MAX(quota) AS quota \
     FROM history WHERE app = $1 AND minute >= $2 AND minute < $3 AND ($5 IS NULL OR dyno = $5) \
     GROUP BY dyno, minute / $4 ORDER BY dyno, t";

/// The slots `[$6, $7)` from the roll-up and the minutes of `[$2, $6)` and
/// `[$7, $3)` from the history, grouped into buckets as [`MINUTES_SQL`] does
/// (`$4` a multiple of a slot, every figure non-negative: a slot and its
/// minutes fall in the same bucket). The minutes at each end are found by
/// the dynos with a slot there (`$8` = `$6` minus a slot, and `$7`; every
/// minute has its slot), a range of the primary key for each: an app's
/// minutes are never scanned. `CROSS JOIN` keeps SQLite from starting with
/// `history` (an inner join to PostgreSQL).
const ROLLED_SQL: &str = "SELECT dyno, (k / $4) * $4 AS t, SUM(samples) AS samples, \
     MIN(total_min) AS min, SUM(total_sum) * 1.0 / SUM(samples) AS avg, MAX(total_max) AS max, \
     MAX(rss_max) AS rss, MAX(swap_max) AS swap, MAX(quota) AS quota FROM ( \
     SELECT dyno, slot AS k, samples, total_min, total_max, total_sum, rss_max, swap_max, quota_max AS quota \
     FROM history_rollup WHERE app = $1 AND slot >= $6 AND slot < $7 AND ($5 IS NULL OR dyno = $5) \
     UNION ALL SELECT h.dyno, h.minute AS k, h.samples, h.total_min, h.total_max, h.total_sum, h.rss_max, h.swap_max, h.quota \
     FROM history_rollup r CROSS JOIN history h \
     WHERE r.app = $1 AND r.slot = $8 AND ($5 IS NULL OR r.dyno = $5) \
     AND h.app = r.app AND h.dyno = r.dyno AND h.minute >= $2 AND h.minute < $6 \
     UNION ALL SELECT h.dyno, h.minute AS k, h.samples, h.total_min, h.total_max, h.total_sum, h.rss_max, h.swap_max, h.quota \
     FROM history_rollup r CROSS JOIN history h \
     WHERE r.app = $1 AND r.slot = $7 AND ($5 IS NULL OR r.dyno = $5) \
     AND h.app = r.app AND h.dyno = r.dyno AND h.minute >= $7 AND h.minute < $3 \
     ) AS parts GROUP BY dyno, k / $4 ORDER BY dyno, t";

/// Today's definition of [`Store::instance_starts`], over the minutes: each
/// instance's first minute from `$2` on. What the read through
/// `instance_starts` must give (tested against it).
#[cfg(test)]
const STARTS_FROM_MINUTES_SQL: &str = "SELECT dyno, instance, MIN(minute) AS since FROM history \
     WHERE app = $1 AND minute >= $2 AND instance IS NOT NULL \
     GROUP BY dyno, instance ORDER BY dyno, since";

/// Each instance of the app whose bounds reach `$2`, with its first minute
/// in `history` from `$2` on within them (none when a newer instance took
/// all its minutes over): the minutes of the dyno from the later of
/// `first_minute` and `$2`, in the primary key's order, up to the first
/// with the instance — as a rule the first one read.
const STARTS_SQL: &str = "SELECT dyno, instance, since FROM ( \
     SELECT s.dyno, s.instance, (SELECT h.minute FROM history h \
       WHERE h.app = s.app AND h.dyno = s.dyno \
       AND h.minute >= CASE WHEN s.first_minute > $2 THEN s.first_minute ELSE $2 END \
       AND h.minute < s.ends_before AND h.instance = s.instance \
       ORDER BY h.minute LIMIT 1) AS since \
     FROM instance_starts s WHERE s.app = $1 AND s.ends_before > $2 \
     ) AS starts WHERE since IS NOT NULL ORDER BY dyno, since";

/// Merges minutes into `history` (the same fold as [`MinuteRow::merge`]).
/// CASE rather than LEAST/GREATEST or MIN/MAX: the same SQL on both
/// backends; a NULL never replaces a figure.
static MERGE_MINUTES: Batched = Batched::new(
    "INSERT INTO history (app, dyno, minute, samples, total_min, total_max, total_sum, rss_max, swap_max, quota, instance, last_at) VALUES ",
    12,
    " ON CONFLICT (app, dyno, minute) DO UPDATE SET \
     samples = history.samples + excluded.samples, \
     total_min = CASE WHEN excluded.total_min < history.total_min THEN excluded.total_min ELSE history.total_min END, \
     total_max = CASE WHEN excluded.total_max > history.total_max THEN excluded.total_max ELSE history.total_max END, \
     total_sum = history.total_sum + excluded.total_sum, \
     rss_max = CASE WHEN history.rss_max IS NULL OR excluded.rss_max > history.rss_max THEN excluded.rss_max ELSE history.rss_max END, \
     swap_max = CASE WHEN history.swap_max IS NULL OR excluded.swap_max > history.swap_max THEN excluded.swap_max ELSE history.swap_max END, \
     quota = CASE WHEN excluded.last_at >= history.last_at AND excluded.quota IS NOT NULL THEN excluded.quota ELSE history.quota END, \
     instance = CASE WHEN excluded.last_at >= history.last_at AND excluded.instance IS NOT NULL THEN excluded.instance ELSE history.instance END, \
     last_at = CASE WHEN excluded.last_at > history.last_at THEN excluded.last_at ELSE history.last_at END",
);

/// Locks the roll-up slots a batch falls in (creates or touches their
/// rows) before the minutes are written; see `write_history`.
static LOCK_SLOTS: Batched = Batched::with_fill(
    "INSERT INTO history_rollup (app, dyno, slot, samples, total_min, total_max, total_sum) VALUES ",
    3,
    ", 0, 0, 0, 0",
    " ON CONFLICT (app, dyno, slot) DO UPDATE SET samples = history_rollup.samples",
);

/// Recomputes the roll-up slots a batch fell in from their minutes, after
/// the minutes are written. Recomputed rather than merged: a minute's quota
/// is its newest sample's, so a slot's highest quota can fall; sums and
/// extremes of the minutes are then exact whatever the batches were. (A CTE
/// and `UPDATE … FROM`, not `(app, dyno, slot) IN (VALUES …)`: SQLite scans
/// the whole roll-up for the latter.)
static ROLL_SLOTS: Batched = Batched::new(
    "WITH v (app, dyno, slot, slot_end) AS (VALUES ",
    4,
    ") UPDATE history_rollup SET \
     (samples, total_min, total_max, total_sum, rss_max, swap_max, quota_max) = \
     (SELECT SUM(samples), MIN(total_min), MAX(total_max), SUM(total_sum), MAX(rss_max), MAX(swap_max), MAX(quota) \
      FROM history h WHERE h.app = v.app AND h.dyno = v.dyno AND h.minute >= v.slot AND h.minute < v.slot_end) \
     FROM v WHERE history_rollup.app = v.app AND history_rollup.dyno = v.dyno AND history_rollup.slot = v.slot",
);

/// Widens the bounds of the instances a batch names: each row widens the
/// bounds it meets, and leaves a row they already cover untouched (not
/// rewritten).
static WIDEN_STARTS: Batched = Batched::new(
    "INSERT INTO instance_starts (app, dyno, instance, first_minute, ends_before) VALUES ",
    5,
    " ON CONFLICT (app, dyno, instance) DO UPDATE SET \
     first_minute = CASE WHEN excluded.first_minute < instance_starts.first_minute \
       THEN excluded.first_minute ELSE instance_starts.first_minute END, \
     ends_before = CASE WHEN excluded.ends_before > instance_starts.ends_before \
       THEN excluded.ends_before ELSE instance_starts.ends_before END \
     WHERE excluded.first_minute < instance_starts.first_minute \
       OR excluded.ends_before > instance_starts.ends_before",
);

impl Store {
    /// Merges minutes into the history in one transaction, and recomputes
    /// the roll-up slots they fall in within it, and widens the bounds of
    /// the instances they name (`instance_starts`).
    pub async fn write_history(&self, rows: &[MinuteRow]) -> Result<(), StoreError> {
        self.write(async {
            if rows.is_empty() {
                return Ok(());
            }
            // Each slot written is first locked (its row created or touched)
            // and only recomputed after the minutes: a writer of the same slot
            // in another transaction (another replica) waits for the lock, so
            // under PostgreSQL's read committed its recomputation starts after
            // the first one committed and sees both's minutes. Slots are locked
            // in one order (sorted), so two writers never deadlock.
            let slots: std::collections::BTreeSet<(&str, &str, i64)> = rows
                .iter()
                .map(|r| (r.app.as_str(), r.dyno.as_str(), slot_of(r.minute)))
                .collect();
            // Every minute with an instance widens that instance's bounds,
            // whether or not its sample is the minute's newest (a superset
            // of the minutes that keep it): one row per dyno and instance of
            // the batch, sorted (the order rows are locked in).
            let mut starts: std::collections::BTreeMap<(&str, &str, &str), (i64, i64)> =
                std::collections::BTreeMap::new();
            for r in rows {
                if let Some(i) = r.instance.as_deref() {
                    let end = slot_of(r.minute).saturating_add(ROLLUP_MS);
                    starts
                        .entry((r.app.as_str(), r.dyno.as_str(), i))
                        .and_modify(|(first, until)| {
                            *first = (*first).min(r.minute);
                            *until = (*until).max(end);
                        })
                        .or_insert((r.minute, end));
                }
            }
            let starts: Vec<_> = starts.into_iter().collect();
            let slots: Vec<_> = slots.into_iter().collect();
            on_pool!(self, p => in_transaction!(p, |conn| {
                for (sql, part) in LOCK_SLOTS.parts(&slots) {
                    let mut q = sqlx::query(sql);
                    for (app, dyno, slot) in part {
                        q = q.bind(*app).bind(*dyno).bind(*slot);
                    }
                    q.execute(&mut *conn).await?;
                }
                for round in batch::rounds(rows, |r| (r.app.as_str(), r.dyno.as_str(), r.minute)) {
                    for (sql, part) in MERGE_MINUTES.parts(&round) {
                        let mut q = sqlx::query(sql);
                        for r in part {
                            q = q.bind(&r.app).bind(&r.dyno).bind(r.minute).bind(r.samples)
                                .bind(r.total_min).bind(r.total_max).bind(r.total_sum)
                                .bind(r.rss_max).bind(r.swap_max).bind(r.quota)
                                .bind(&r.instance).bind(r.last_at);
                        }
                        q.execute(&mut *conn).await?;
                    }
                }
                for (sql, part) in ROLL_SLOTS.parts(&slots) {
                    let mut q = sqlx::query(sql);
                    for (app, dyno, slot) in part {
                        q = q.bind(*app).bind(*dyno).bind(*slot).bind(slot.saturating_add(ROLLUP_MS));
                    }
                    q.execute(&mut *conn).await?;
                }
                for (sql, part) in WIDEN_STARTS.parts(&starts) {
                    let mut q = sqlx::query(sql);
                    for ((app, dyno, instance), (first, until)) in part {
                        q = q.bind(*app).bind(*dyno).bind(*instance).bind(*first).bind(*until);
                    }
                    q.execute(&mut *conn).await?;
                }
            }));
            Ok(())
        })
        .await
    }

    /// The history of an app's dynos (or one dyno) from `from` to `to`
    /// (unix ms, log time), in buckets of `bucket` ms (a multiple of a
    /// minute; one minute gives the stored rows), ordered by dyno and time.
    ///
    /// Buckets of a multiple of [`ROLLUP_MS`] read the range's whole slots
    /// from the roll-up and the minutes before the first and after the last
    /// from the history: the same points and figures as reading minutes (a
    /// slot lies within one bucket), up to the order a floating-point sum
    /// adds in (the average's last bits).
    pub async fn history(
        &self,
        app: &str,
        dyno: Option<&str>,
        from: i64,
        to: i64,
        bucket: i64,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        let bucket = bucket.max(MINUTE_MS) / MINUTE_MS * MINUTE_MS;
        let dyno = dyno.map(str::to_owned);
        match whole_slots(from, to).filter(|_| bucket % ROLLUP_MS == 0) {
            Some((first, end)) => Ok(
                on_pool!(self, p => sqlx::query_as::<_, HistoryPoint>(ROLLED_SQL)
                .bind(app).bind(from).bind(to).bind(bucket).bind(dyno).bind(first).bind(end).bind(first - ROLLUP_MS)
                .fetch_all(p).await?),
            ),
            None => Ok(
                on_pool!(self, p => sqlx::query_as::<_, HistoryPoint>(MINUTES_SQL)
                .bind(app).bind(from).bind(to).bind(bucket).bind(dyno)
                .fetch_all(p).await?),
            ),
        }
    }

    /// Every app's minutes before `before` (unix ms) and their part of the
    /// roll-up, in one transaction: slots wholly before it go, the slot it
    /// cuts is recomputed from the minutes left; so do the instances whose
    /// minutes all lay before it. Returns the minutes deleted.
    pub(super) async fn prune_history(&self, before: i64) -> Result<u64, StoreError> {
        let cut = slot_of(before);
        let mut n = 0;
        // Whole slots before the cut first, the oldest slot a transaction:
        // each its own turn at the writer, so a restart claim waits for one
        // slot's minutes (120,000 rows at 10,000 dynos), not for the hour's.
        // `end` only moves forward, so this ends by the cut (a late write
        // of an older minute goes with the last step, which deletes every
        // minute before `before`).
        let mut done = i64::MIN;
        while let Some(end) = self.oldest_whole_slot_end(cut).await? {
            if end <= done {
                break;
            }
            n += self.write(self.prune_slots_before(end)).await?;
            done = end;
        }
        n += self.write(self.prune_cut(before)).await?;
        Ok(n)
    }

    /// The end of the oldest slot that lies wholly before `cut` and still
    /// has minutes.
    async fn oldest_whole_slot_end(&self, cut: i64) -> Result<Option<i64>, StoreError> {
        const OLDEST: &str = "SELECT MIN(minute) FROM history";
        let oldest: Option<i64> =
            on_pool!(self, p => sqlx::query_scalar(OLDEST).fetch_one(p).await?);
        Ok(oldest
            .map(slot_of)
            .filter(|s| *s < cut)
            .map(|s| s.saturating_add(ROLLUP_MS)))
    }

    /// Minutes before `end` (a slot's start) and their roll-up, together.
    async fn prune_slots_before(&self, end: i64) -> Result<u64, StoreError> {
        const OLD_SLOTS: &str = "DELETE FROM history_rollup WHERE slot < $1";
        const MINUTES: &str = "DELETE FROM history WHERE minute < $1";
        let mut n = 0;
        on_pool!(self, p => in_transaction!(p, |conn| {
            // The roll-up first: the order `write_history` locks in.
            sqlx::query(OLD_SLOTS).bind(end).execute(&mut *conn).await?;
            n = sqlx::query(MINUTES).bind(end).execute(&mut *conn).await?.rows_affected();
        }));
        Ok(n)
    }

    /// What is left before `before`: the slots before its slot (their
    /// minutes are gone), the minutes of its slot before it — that slot
    /// recomputed, or dropped if emptied — and the instance bounds that
    /// end by it.
    async fn prune_cut(&self, before: i64) -> Result<u64, StoreError> {
        const OLD_SLOTS: &str = "DELETE FROM history_rollup WHERE slot < $1";
        const MINUTES: &str = "DELETE FROM history WHERE minute < $1";
        const EMPTIED: &str = "DELETE FROM history_rollup WHERE slot = $1 AND NOT EXISTS \
             (SELECT 1 FROM history h WHERE h.app = history_rollup.app AND h.dyno = history_rollup.dyno \
              AND h.minute >= $1 AND h.minute < $2)";
        const STARTS: &str = "DELETE FROM instance_starts WHERE ends_before <= $1";
        const CUT: &str = "UPDATE history_rollup SET \
             (samples, total_min, total_max, total_sum, rss_max, swap_max, quota_max) = \
             (SELECT SUM(samples), MIN(total_min), MAX(total_max), SUM(total_sum), MAX(rss_max), MAX(swap_max), MAX(quota) \
              FROM history h WHERE h.app = history_rollup.app AND h.dyno = history_rollup.dyno \
              AND h.minute >= $1 AND h.minute < $2) \
             WHERE slot = $1";
        let cut = slot_of(before);
        let mut n = 0;
        on_pool!(self, p => in_transaction!(p, |conn| {
            // The roll-up first: the order `write_history` locks in.
            sqlx::query(OLD_SLOTS).bind(cut).execute(&mut *conn).await?;
            n = sqlx::query(MINUTES).bind(before).execute(&mut *conn).await?.rows_affected();
            if cut < before {
                let end = cut.saturating_add(ROLLUP_MS);
                sqlx::query(EMPTIED).bind(cut).bind(end).execute(&mut *conn).await?;
                sqlx::query(CUT).bind(cut).bind(end).execute(&mut *conn).await?;
            }
            sqlx::query(STARTS).bind(before).execute(&mut *conn).await?;
        }));
        Ok(n)
    }

    /// Did the dyno ever report: a minute of history, a latest sample or an
    /// event of it in the store (all within their retention)?
    pub async fn dyno_reported(&self, app: &str, dyno: &str) -> Result<bool, StoreError> {
        // Each branch is an index lookup; LIMIT 1 stops at the first row.
        const SQL: &str = "SELECT 1 FROM history WHERE app = $1 AND dyno = $2 \
             UNION ALL SELECT 1 FROM samples WHERE app = $1 AND dyno = $2 \
             UNION ALL SELECT 1 FROM events WHERE app = $1 AND dyno = $2 LIMIT 1";
        Ok(on_pool!(self, p => sqlx::query_scalar::<_, i32>(SQL)
            .bind(app).bind(dyno).fetch_optional(p).await?)
        .is_some())
    }

    /// Every instance of an app's dynos seen in the history since `from`
    /// (unix ms), with its first minute from `from` on (the instance of a
    /// minute is its newest sample's), ordered by dyno and minute: where
    /// the instance changed.
    ///
    /// Reads `instance_starts` and, for each instance whose bounds reach
    /// `from`, its first minute in `history` within them: what grouping the
    /// range's minutes by instance gives, without reading them.
    pub async fn instance_starts(
        &self,
        app: &str,
        from: i64,
    ) -> Result<Vec<InstanceStart>, StoreError> {
        Ok(
            on_pool!(self, p => sqlx::query_as::<_, InstanceStart>(STARTS_SQL)
            .bind(app).bind(from).fetch_all(p).await?),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(
        inst: &str,
        at: i64,
        total: f64,
        rss: Option<f64>,
        swap: Option<f64>,
        quota: Option<f64>,
    ) -> MinuteRow {
        MinuteRow::of_sample(&SampleRow {
            app: "a".into(),
            dyno: "web.1".into(),
            instance: Some(inst.into()),
            at,
            memory: MemoryMb {
                total: Some(total),
                rss,
                swap,
                quota,
            },
            replaced: None,
            contender: None,
        })
        .unwrap()
    }

    #[test]
    fn minutes_merge_like_the_upsert() {
        let mut a = minute("i1", 61_000, 300.0, Some(290.0), None, Some(512.0));
        assert_eq!(a.minute, 60_000);
        a.merge(minute("i2", 119_999, 100.0, Some(95.0), Some(3.0), None));
        a.merge(minute("i0", 62_000, 500.0, None, None, Some(1024.0)));
        assert_eq!(a.samples, 3);
        assert_eq!(
            (a.total_min, a.total_max, a.total_sum),
            (100.0, 500.0, 900.0)
        );
        assert_eq!((a.rss_max, a.swap_max), (Some(290.0), Some(3.0)));
        // The newest sample's instance wins; a sample without a quota keeps the last known.
        assert_eq!(
            (a.instance.as_deref(), a.quota, a.last_at),
            (Some("i2"), Some(512.0), 119_999)
        );
    }

    #[test]
    fn a_sample_without_total_has_no_minute() {
        let mut s = SampleRow {
            app: "a".into(),
            dyno: "web.1".into(),
            instance: None,
            at: -1,
            memory: MemoryMb {
                rss: Some(1.0),
                ..MemoryMb::default()
            },
            replaced: None,
            contender: None,
        };
        assert!(MinuteRow::of_sample(&s).is_none());
        s.memory.total = Some(1.0);
        assert_eq!(
            MinuteRow::of_sample(&s).unwrap().minute,
            -60_000,
            "floored, even before 1970"
        );
    }

    #[test]
    fn whole_slots_are_those_inside_the_range() {
        const S: i64 = ROLLUP_MS;
        assert_eq!(whole_slots(0, 3 * S), Some((0, 3 * S)));
        assert_eq!(whole_slots(1, 3 * S - 1), Some((S, 2 * S)));
        assert_eq!(whole_slots(1, 2 * S - 1), None, "no whole slot");
        assert_eq!(whole_slots(-1, 3 * S), None, "before 1970: minutes");
        assert_eq!(whole_slots(S, i64::MAX), Some((S, i64::MAX / S * S)));
        assert_eq!(slot_of(-1), -S);
    }

    /// A SQLite file migrated up to `version` only (a database an older
    /// dynoguard left), its URL and a pool on it.
    async fn sqlite_at_migration(version: i64) -> (tempfile::TempDir, String, sqlx::SqlitePool) {
        let dir = tempfile::tempdir().expect("a directory");
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("a URL");
        let pool = sqlx::SqlitePool::connect_with(opts.create_if_missing(true))
            .await
            .expect("a database");
        sqlx::migrate!("migrations/sqlite")
            .run_to(version, &pool)
            .await
            .expect("the earlier migrations");
        (dir, url, pool)
    }

    /// A database upgraded with minutes in it: the migration bounds each
    /// instance's minutes, so `instance_starts` reads what grouping the
    /// minutes gives — then and after more minutes are written.
    #[tokio::test]
    async fn the_migration_bounds_the_instances_already_stored() {
        let (_dir, url, pool) = sqlite_at_migration(6).await;
        let t0 = 1_763_700_000_000_i64;
        // web.1: i1, i2, then i1 again for a minute, i3; web.2: none, then j.
        let instance = |dyno: &str, m: i64| match (dyno, m) {
            ("web.1", 0..30) | ("web.1", 50) => Some("i1"),
            ("web.1", 30..60) => Some("i2"),
            ("web.1", _) => Some("i3"),
            (_, 0..40) => None,
            _ => Some("j"),
        };
        for m in 0..100_i64 {
            for dyno in ["web.1", "web.2"] {
                sqlx::query(
                    "INSERT INTO history (app, dyno, minute, samples, total_min, total_max, total_sum, rss_max, swap_max, quota, instance, last_at) \
                     VALUES ('a', $1, $2, 1, 1, 1, 1, NULL, NULL, NULL, $3, $2)",
                )
                .bind(dyno)
                .bind(t0 + m * MINUTE_MS)
                .bind(instance(dyno, m))
                .execute(&pool)
                .await
                .expect("a minute");
            }
        }
        pool.close().await;
        let store = Store::connect(&url).await.expect("migrated");
        let Db::Sqlite(p) = &store.db else {
            panic!("SQLite")
        };
        let store = &store;
        let check = |what: &'static str| async move {
            for m in -1..=110 {
                for from in [t0 + m * MINUTE_MS, t0 + m * MINUTE_MS + 1] {
                    let minutes: Vec<InstanceStart> = sqlx::query_as(STARTS_FROM_MINUTES_SQL)
                        .bind("a")
                        .bind(from)
                        .fetch_all(p)
                        .await
                        .expect("minutes");
                    let got = store.instance_starts("a", from).await.expect("starts");
                    assert_eq!(got, minutes, "{what}, from {from}");
                }
            }
        };
        check("migrated").await;
        let all = store.instance_starts("a", 0).await.expect("starts");
        assert_eq!(all.len(), 4, "{all:?}");
        // A newer sample gives web.1's minute 50 to i3 (i1's stray minute
        // goes), an older one for i9 loses; web.2 gets minutes from k.
        let mut newer = minute("i3", t0 + 50 * MINUTE_MS + 30_000, 1.0, None, None, None);
        newer.last_at = t0 + 50 * MINUTE_MS + 59_000;
        let mut older = minute("i9", t0 + 60 * MINUTE_MS, 1.0, None, None, None);
        older.last_at = t0 + 60 * MINUTE_MS - 1;
        let mut k = minute("k", t0 + 120 * MINUTE_MS, 1.0, None, None, None);
        k.dyno = "web.2".into();
        store
            .write_history(&[newer, older, k])
            .await
            .expect("written");
        check("written").await;
    }

    /// A database upgraded with minutes in it: the migration rolls them up,
    /// so the long ranges show them (and read what the minutes say).
    #[tokio::test]
    async fn the_migration_rolls_up_the_minutes_already_stored() {
        let (_dir, url, pool) = sqlite_at_migration(5).await;
        let t0 = 1_763_700_000_000_i64;
        for m in 0..100_i64 {
            for dyno in ["web.1", "web.2"] {
                sqlx::query(
                    "INSERT INTO history (app, dyno, minute, samples, total_min, total_max, total_sum, rss_max, swap_max, quota, instance, last_at) \
                     VALUES ('a', $1, $2, 2, $3, $4, $5, $3, NULL, $6, 'i', $2)",
                )
                .bind(dyno)
                .bind(t0 + m * MINUTE_MS)
                .bind(100.0 + (m % 7) as f64)
                .bind(300.0 + (m % 11) as f64)
                .bind(400.0 + (m % 7) as f64 + (m % 11) as f64)
                .bind(if m < 50 { 1024.0 } else { 512.0 })
                .execute(&pool)
                .await
                .expect("a minute");
            }
        }
        pool.close().await;
        let store = Store::connect(&url).await.expect("migrated");
        let Db::Sqlite(p) = &store.db else {
            panic!("SQLite")
        };
        let slots: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM history_rollup")
            .fetch_one(p)
            .await
            .expect("the roll-up");
        // 100 minutes from 4 past a slot's start: 9 slots, for each dyno.
        assert_eq!(slots, 2 * 9);
        for bucket in [12, 24, 84] {
            let bucket = bucket * MINUTE_MS;
            let (from, to) = (t0 + 5 * MINUTE_MS + 1, t0 + 97 * MINUTE_MS);
            let read = |sql: &'static str| {
                sqlx::query_as::<_, HistoryPoint>(sql)
                    .bind("a")
                    .bind(from)
                    .bind(to)
                    .bind(bucket)
                    .bind(None::<String>)
                    .fetch_all(p)
            };
            let minutes = read(MINUTES_SQL).await.expect("minutes");
            let rolled = store
                .history("a", None, from, to, bucket)
                .await
                .expect("rolled up");
            assert!(minutes.len() > 2);
            assert_eq!(rolled, minutes, "in {bucket}");
        }
    }
}
