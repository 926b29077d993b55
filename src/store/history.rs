//! Per-minute memory history (SPEC §10): one row per app, dyno and minute of
//! log time, merged from every batch and every replica, kept 7 days.
//!
//! The service folds samples into [`MinuteRow`]s in memory and writes them
//! in batches; reading groups minutes into wider buckets in SQL, so a page
//! of 100 dynos over 7 days reads a few thousand rows, not a million.

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

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

impl MinuteRow {
    /// The minute of one sample (none without `memory_total`).
    pub fn of_sample(s: &SampleRow) -> Option<Self> {
        let m = &s.memory;
        let total = m.total?;
        Some(Self {
            app: s.app.clone(),
            dyno: s.dyno.clone(),
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

impl Store {
    /// Merges minutes into the history in one transaction.
    pub async fn write_history(&self, rows: &[MinuteRow]) -> Result<(), StoreError> {
        self.write(async {
            if rows.is_empty() {
                return Ok(());
            }
            // CASE rather than LEAST/GREATEST or MIN/MAX: the same SQL on
            // both backends; a NULL never replaces a figure.
            const SQL: &str = "INSERT INTO history (app, dyno, minute, samples, total_min, total_max, total_sum, rss_max, swap_max, quota, instance, last_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (app, dyno, minute) DO UPDATE SET \
                 samples = history.samples + excluded.samples, \
                 total_min = CASE WHEN excluded.total_min < history.total_min THEN excluded.total_min ELSE history.total_min END, \
                 total_max = CASE WHEN excluded.total_max > history.total_max THEN excluded.total_max ELSE history.total_max END, \
                 total_sum = history.total_sum + excluded.total_sum, \
                 rss_max = CASE WHEN history.rss_max IS NULL OR excluded.rss_max > history.rss_max THEN excluded.rss_max ELSE history.rss_max END, \
                 swap_max = CASE WHEN history.swap_max IS NULL OR excluded.swap_max > history.swap_max THEN excluded.swap_max ELSE history.swap_max END, \
                 quota = CASE WHEN excluded.last_at >= history.last_at AND excluded.quota IS NOT NULL THEN excluded.quota ELSE history.quota END, \
                 instance = CASE WHEN excluded.last_at >= history.last_at AND excluded.instance IS NOT NULL THEN excluded.instance ELSE history.instance END, \
                 last_at = CASE WHEN excluded.last_at > history.last_at THEN excluded.last_at ELSE history.last_at END";
            on_pool!(self, p => in_transaction!(p, |conn| {
                for r in rows {
                    sqlx::query(SQL)
                        .bind(&r.app).bind(&r.dyno).bind(r.minute).bind(r.samples)
                        .bind(r.total_min).bind(r.total_max).bind(r.total_sum)
                        .bind(r.rss_max).bind(r.swap_max).bind(r.quota)
                        .bind(&r.instance).bind(r.last_at)
                        .execute(&mut *conn).await?;
                }
            }));
            Ok(())
        })
        .await
    }

    /// The history of an app's dynos (or one dyno) from `from` to `to`
    /// (unix ms, log time), in buckets of `bucket` ms (a multiple of a
    /// minute; one minute gives the stored rows), ordered by dyno and time.
    pub async fn history(
        &self,
        app: &str,
        dyno: Option<&str>,
        from: i64,
        to: i64,
        bucket: i64,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        // `* 1.0`: a floating division on both backends.
        const SQL: &str = "SELECT dyno, (minute / $4) * $4 AS t, SUM(samples) AS samples, \
             MIN(total_min) AS min, SUM(total_sum) * 1.0 / SUM(samples) AS avg, MAX(total_max) AS max, \
             MAX(rss_max) AS rss, MAX(swap_max) AS swap, MAX(quota) AS quota \
             FROM history WHERE app = $1 AND minute >= $2 AND minute < $3 AND ($5 IS NULL OR dyno = $5) \
             GROUP BY dyno, minute / $4 ORDER BY dyno, t";
        let bucket = bucket.max(MINUTE_MS) / MINUTE_MS * MINUTE_MS;
        let dyno = dyno.map(str::to_owned);
        Ok(on_pool!(self, p => sqlx::query_as::<_, HistoryPoint>(SQL)
            .bind(app).bind(from).bind(to).bind(bucket).bind(dyno)
            .fetch_all(p).await?))
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
    /// (unix ms), with its first minute: where the instance changed.
    pub async fn instance_starts(
        &self,
        app: &str,
        from: i64,
    ) -> Result<Vec<InstanceStart>, StoreError> {
        const SQL: &str = "SELECT dyno, instance, MIN(minute) AS since FROM history \
             WHERE app = $1 AND minute >= $2 AND instance IS NOT NULL \
             GROUP BY dyno, instance ORDER BY dyno, since";
        Ok(on_pool!(self, p => sqlx::query_as::<_, InstanceStart>(SQL)
            .bind(app).bind(from).fetch_all(p).await?))
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
}
