//! Schedules as specified: a cron timetable (`CronSpec`: five standard fields, or six with
//! seconds first), the schedule a playbook declares (`schedules:`) or an analyst makes on a
//! page (`ScheduleSpec`, stored as JSON), and their validation against the playbook. The loop
//! that fires them is the scheduler in `jobs/scheduler.rs`.

use std::str::FromStr;

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::model::params::{parse_all, ParseCtx};
use crate::model::Declares;
use crate::util::problem::Problems;
use crate::util::yaml::pos;
use crate::util::yaml::scalar_text;

/// A cron timetable: standard 5 fields (`min hour day month weekday`, weekday 0–7 with 0
/// and 7 = Sunday) or 6 with seconds first; also `@hourly`, `@daily`, `@weekly`, `@monthly`.
#[derive(Debug, Clone)]
pub struct CronSpec {
    schedule: cron::Schedule,
}

impl CronSpec {
    pub fn parse(text: &str) -> Result<CronSpec, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let expr = match fields.len() {
            1 if fields[0].starts_with('@') => fields[0].to_string(),
            5 => format!("0 {} {} {} {} {}", fields[0], fields[1], fields[2], fields[3], weekdays(fields[4])?),
            6 => format!(
                "{} {} {} {} {} {}",
                fields[0],
                fields[1],
                fields[2],
                fields[3],
                fields[4],
                weekdays(fields[5])?
            ),
            _ => {
                return Err(format!(
                    "`{text}` is not a cron timetable: write 5 fields (minute hour day month weekday, e.g. `0 6 * * *` \
                     for 06:00 daily) or 6 with seconds first"
                ))
            }
        };
        cron::Schedule::from_str(&expr)
            .map(|schedule| CronSpec { schedule })
            .map_err(|e| format!("`{text}` is not a cron timetable: {e}"))
    }

    /// The first fire strictly after `t`, reading the timetable in `tz`.
    pub fn next_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.schedule.after(&t.with_timezone(&tz)).next().map(|d| d.with_timezone(&Utc))
    }

    /// Fires in `(after, until]`, at most `cap` of them (the latest ones are what matter).
    pub fn fires_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        tz: Tz,
        cap: usize,
    ) -> (usize, Option<DateTime<Utc>>) {
        let mut n = 0;
        let mut last = None;
        for t in self.schedule.after(&after.with_timezone(&tz)) {
            let t = t.with_timezone(&Utc);
            if t > until {
                break;
            }
            n += 1;
            last = Some(t);
            if n >= cap {
                // Jump ahead: count no further, but find the latest fire before `until`.
                // (Only frequent timetables get here: fires within the last two hours suffice.)
                let mut probe = self.schedule.after(&(until - chrono::Duration::hours(2)).with_timezone(&tz));
                last = std::iter::from_fn(|| probe.next())
                    .map(|t| t.with_timezone(&Utc))
                    .take_while(|t| *t <= until)
                    .last();
                break;
            }
        }
        (n, last)
    }
}

/// The timetable in words, for the common shapes the schedule form makes (None otherwise;
/// the page then shows the cron text alone).
pub fn describe(cron: &str) -> Option<String> {
    let f: Vec<&str> = cron.split_whitespace().collect();
    let at = |m: &str, h: &str| -> Option<String> {
        let (m, h) = (m.parse::<u32>().ok()?, h.parse::<u32>().ok()?);
        (m < 60 && h < 24).then(|| format!("{h:02}:{m:02}"))
    };
    const DAYS: [&str; 8] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    match f.as_slice() {
        [sec, "*", "*", "*", "*", "*"] => match sec.strip_prefix("*/") {
            Some(n) => Some(format!("every {n} seconds")),
            None if *sec == "*" => Some("every second".into()),
            None => None,
        },
        [m, "*", "*", "*", "*"] => match m.strip_prefix("*/") {
            Some(n) => Some(format!("every {n} minutes")),
            None if *m == "0" => Some("every hour".into()),
            None => m.parse::<u32>().ok().map(|m| format!("every hour at :{m:02}")),
        },
        [m, h, "*", "*", "*"] => at(m, h).map(|t| format!("every day at {t}")),
        [m, h, "*", "*", "1-5"] => at(m, h).map(|t| format!("weekdays at {t}")),
        [m, h, "*", "*", d] => {
            let day = d.parse::<usize>().ok().and_then(|d| DAYS.get(d))?;
            at(m, h).map(|t| format!("every {day} at {t}"))
        }
        _ => None,
    }
}

/// Standard cron weekdays (0–7, 0 and 7 = Sunday, names) to the `cron` crate's (1–7 from
/// Sunday): expanded to an explicit list so that ranges and steps keep their meaning.
fn weekdays(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let day = |s: &str| -> Result<u32, String> {
        let l = s.to_ascii_lowercase();
        if let Some(i) = NAMES.iter().position(|n| l.starts_with(n)) {
            return Ok(i as u32);
        }
        match s.parse::<u32>() {
            Ok(n) if n <= 7 => Ok(n % 7),
            _ => Err(format!("`{s}` is not a weekday (0–7 or sun…sat)")),
        }
    };
    let mut set = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(|| format!("bad step in `{item}`"))?)
            }
            None => (item, 1),
        };
        let (a, b) = match range {
            "*" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => {
                    let (a, b) =
                        (day(a)?, b.parse::<u32>().map(|n| if n == 7 { 6 } else { n % 7 }).or_else(|_| day(b))?);
                    if a > b {
                        return Err(format!("`{item}`: the range goes backwards"));
                    }
                    // `5-7` means Friday to Sunday.
                    if range.ends_with('7') && !range.starts_with('7') {
                        set[0] = true;
                    }
                    (a, b)
                }
                None => {
                    let d = day(r)?;
                    (d, if step > 1 { 6 } else { d })
                }
            },
        };
        let mut d = a;
        while d <= b {
            set[d as usize] = true;
            d += step;
        }
    }
    let list: Vec<String> = (0..7).filter(|d| set[*d]).map(|d| (d + 1).to_string()).collect();
    if list.is_empty() {
        return Err(format!("`{field}` names no weekday"));
    }
    Ok(list.join(","))
}

/// What to do with fires missed while casebook was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Skip them; the next fire on time runs.
    #[default]
    Skip,
    /// Run once at start for all of them.
    RunOnce,
}

/// A webhook notification after each run of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// The name of the secret holding the webhook URL (e.g. SOC_WEBHOOK).
    pub webhook: String,
    /// Post only when this holds (default: after every run). A failed run is always posted.
    #[serde(default)]
    pub when: Option<NotifyWhen>,
}

/// `when: { step: beacons, more_than: 0, new_only: true }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyWhen {
    pub step: String,
    /// Post when the step has more rows than this (default 0: any row).
    #[serde(default)]
    pub more_than: u64,
    /// Count only the rows that were not in the previous run (the step must be in `what_is_new`).
    #[serde(default)]
    pub new_only: bool,
}

/// What a schedule does; stored as JSON in the state database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    pub cron: String,
    pub timezone: String,
    /// Parameter values as entered (`last 24h` stays relative and is resolved at fire time).
    pub params: IndexMap<String, String>,
    pub missed: Missed,
    /// Steps whose rows not in the schedule's previous run are shown as their own table.
    pub what_is_new: Vec<String>,
    pub notify: Option<NotifySpec>,
}

impl ScheduleSpec {
    /// Problems with this spec for playbook `pb`, as messages an author or analyst reads.
    pub fn check(&self, pb: &dyn Declares, cx: &ParseCtx) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = CronSpec::parse(&self.cron) {
            out.push(e);
        }
        if self.timezone.parse::<Tz>().is_err() {
            out.push(format!("unknown time zone `{}` (use a name such as Europe/Prague or UTC)", self.timezone));
        }
        for name in self.params.keys() {
            if pb.param(name).is_none() {
                out.push(format!("unknown parameter `{name}`"));
            }
        }
        if let Err(errors) = parse_all(pb.params(), |name| self.params.get(name).map(String::as_str), cx) {
            out.extend(errors.into_iter().map(|(name, e)| format!("parameter `{name}`: {e}")));
        }
        let is_query = |id: &str| pb.makes_table(id);
        for s in &self.what_is_new {
            if !is_query(s) {
                out.push(format!("`what_is_new`: `{s}` is not a query step of this playbook"));
            }
        }
        if let Some(n) = &self.notify {
            if !crate::secrets::valid_name(&n.webhook) {
                out.push(format!("`notify.webhook` is the name of a secret (e.g. SOC_WEBHOOK), not `{}`", n.webhook));
            }
            if let Some(w) = &n.when {
                if !is_query(&w.step) {
                    out.push(format!("`notify.when.step`: `{}` is not a query step of this playbook", w.step));
                }
                if w.new_only && !self.what_is_new.contains(&w.step) {
                    out.push(format!("`notify.when.new_only` needs `{}` in `what_is_new`", w.step));
                }
            }
        }
        out
    }

    pub fn tz(&self) -> Tz {
        self.timezone.parse().unwrap_or(Tz::UTC)
    }
}

/// A schedule as a playbook declares it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub name: String,
    /// `0 6 * * *` (minute hour day month weekday), or 6 fields with seconds first.
    #[schemars(with = "String")]
    pub cron: Spanned<String>,
    /// The zone the timetable is read in (default: the server's).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Parameter values; relative windows such as `last 24h` are resolved at each fire.
    #[serde(default)]
    pub params: IndexMap<String, serde_json::Value>,
    #[serde(default)]
    pub missed: Missed,
    /// Whether it starts enabled (an administrator can switch it on and off on the page).
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub what_is_new: Vec<String>,
    #[serde(default)]
    pub notify: Option<NotifySpec>,
}

fn yes() -> bool {
    true
}

/// A validated declared schedule.
#[derive(Debug, Clone)]
pub struct Declared {
    pub name: String,
    pub spec: ScheduleSpec,
    pub enabled: bool,
}

/// Validates a playbook's `schedules:`; problems are reported at each schedule.
pub fn validate(
    raw: Vec<Spanned<RawSchedule>>,
    pb: &dyn Declares,
    cx: &ParseCtx,
    problems: &mut Problems,
) -> Vec<Declared> {
    let mut out: Vec<Declared> = Vec::new();
    for rs in raw {
        let at = pos(&rs);
        let r = rs.value;
        if r.name.trim().is_empty() || r.name.len() > 80 {
            problems.push(at, "a schedule needs a `name` of 1 to 80 characters");
            continue;
        }
        if out.iter().any(|d| d.name == r.name) {
            problems.push(at, format!("schedule `{}` is declared twice", r.name));
            continue;
        }
        let spec = ScheduleSpec {
            cron: r.cron.value.clone(),
            timezone: r.timezone.unwrap_or_else(|| cx.tz.name().to_string()),
            params: r.params.iter().filter_map(|(k, v)| scalar_text(v).map(|t| (k.clone(), t))).collect(),
            missed: r.missed,
            what_is_new: r.what_is_new,
            notify: r.notify,
        };
        let found = spec.check(pb, cx);
        for m in &found {
            let where_ = if m.contains("cron timetable") { pos(&r.cron) } else { at };
            problems.push(where_, format!("schedule `{}`: {m}", r.name));
        }
        if found.is_empty() {
            out.push(Declared { name: r.name, spec, enabled: r.enabled });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap_or_default()
    }

    #[test]
    fn five_fields_read_as_standard_cron() {
        let c = CronSpec::parse("0 6 * * 1-5").unwrap_or_else(|e| panic!("{e}"));
        // 2026-11-21 is a Saturday: the next weekday 06:00 is Monday the 23rd.
        assert_eq!(c.next_after(at(2026, 11, 21, 7, 0, 0), Tz::UTC), Some(at(2026, 11, 23, 6, 0, 0)));
        let sunday = CronSpec::parse("30 8 * * 0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sunday.next_after(at(2026, 11, 21, 7, 0, 0), Tz::UTC), Some(at(2026, 11, 22, 8, 30, 0)));
        let seven = CronSpec::parse("30 8 * * 7").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seven.next_after(at(2026, 11, 21, 7, 0, 0), Tz::UTC), Some(at(2026, 11, 22, 8, 30, 0)));
        let weekend = CronSpec::parse("0 0 * * 6-7").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(weekend.next_after(at(2026, 11, 21, 7, 0, 0), Tz::UTC), Some(at(2026, 11, 22, 0, 0, 0)));
    }

    #[test]
    fn seconds_field_and_zones() {
        let c = CronSpec::parse("*/2 * * * * *").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.next_after(at(2026, 11, 23, 6, 0, 1), Tz::UTC), Some(at(2026, 11, 23, 6, 0, 2)));
        let prague: Tz = "Europe/Prague".parse().unwrap_or(Tz::UTC);
        let daily = CronSpec::parse("0 6 * * *").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(daily.next_after(at(2026, 11, 23, 0, 0, 0), prague), Some(at(2026, 11, 23, 5, 0, 0)));
    }

    #[test]
    fn bad_timetables_say_how_to_write_one() {
        for bad in ["0 6 * *", "61 * * * *", "0 6 * * 9", "every day"] {
            let e = CronSpec::parse(bad).err().unwrap_or_default();
            assert!(e.contains("cron timetable") || e.contains("weekday"), "{bad}: {e}");
        }
    }

    #[test]
    fn common_timetables_in_words() {
        assert_eq!(describe("30 6 * * 1-5").as_deref(), Some("weekdays at 06:30"));
        assert_eq!(describe("0 6 * * *").as_deref(), Some("every day at 06:00"));
        assert_eq!(describe("0 8 * * 1").as_deref(), Some("every Monday at 08:00"));
        assert_eq!(describe("*/15 * * * *").as_deref(), Some("every 15 minutes"));
        assert_eq!(describe("*/2 * * * * *").as_deref(), Some("every 2 seconds"));
        assert_eq!(describe("0 6 1 * *"), None);
    }

    #[test]
    fn counts_missed_fires() {
        let c = CronSpec::parse("0 * * * *").unwrap_or_else(|e| panic!("{e}"));
        let (n, last) = c.fires_between(at(2026, 11, 23, 0, 30, 0), at(2026, 11, 23, 5, 10, 0), Tz::UTC, 1000);
        assert_eq!((n, last), (5, Some(at(2026, 11, 23, 5, 0, 0))));
    }
}
