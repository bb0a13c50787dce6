//! Schedules: a playbook run on a cron timetable, declared in the playbook (`schedules:`) or
//! created by an analyst from a filled form. Both live in the state database (declared ones
//! are synchronised from the playbooks on every reload); one loop ([`Scheduler`]) computes
//! each schedule's next fire, starts the run through the engine's queue, then shows what is
//! new since the schedule's previous run and posts a webhook notification.
//!
//! Invariants: a schedule never has two runs at once (a fire while its last run is still going
//! is skipped and noted); fires missed while casebook was down follow the schedule's
//! `missed` policy (`skip`, or `run_once` for all of them together); relative windows such as
//! `last 24h` are resolved at the fire time.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::engine::{Engine, RunRequest};
use crate::playbook::params::ParseCtx;
use crate::playbook::{scalar_text, Playbook};
use crate::problem::Problems;
use crate::store::ScheduleRecord;
use crate::yaml::pos;

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
    pub fn check(&self, pb: &Playbook, cx: &ParseCtx) -> Vec<String> {
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
        for p in &pb.params {
            if let Err(e) = p.parse(self.params.get(&p.name).map(String::as_str), cx) {
                out.push(format!("parameter `{}`: {e}", p.name));
            }
        }
        let is_query = |id: &str| pb.step(id).is_some_and(|s| s.is_query());
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
    pb: &Playbook,
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

/// A schedule as the pages list it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub id: i64,
    pub playbook: String,
    pub playbook_title: String,
    pub name: String,
    pub origin: String,
    pub enabled: bool,
    pub cron: String,
    /// The timetable in words, where it has a common shape.
    pub cron_words: Option<String>,
    pub timezone: String,
    pub params: String,
    pub missed: String,
    pub what_is_new: Vec<String>,
    pub notify: Option<String>,
    pub next: Option<String>,
    pub last_fire: Option<String>,
    pub last_run: Option<String>,
    /// When the last run started, in the schedule's zone.
    pub last_run_at: Option<String>,
    pub last_state: Option<String>,
    pub note: Option<String>,
    pub last_notification: Option<String>,
    pub problem: Option<String>,
}

/// Every schedule with its next fire and last run, for the schedules page.
pub fn list(engine: &Engine, only: Option<&str>) -> Result<Vec<Listed>> {
    let catalog = engine.catalog();
    let mut out = Vec::new();
    for rec in engine.store.schedules()? {
        if only.is_some_and(|p| p != rec.playbook) {
            continue;
        }
        let spec: Option<ScheduleSpec> = serde_json::from_str(&rec.spec).ok();
        let pb = catalog.entry(&rec.playbook).and_then(|e| e.runnable());
        let problem = match (&spec, pb) {
            (None, _) => Some("the stored schedule cannot be read".to_string()),
            (_, None) => Some("the playbook is missing or has problems".to_string()),
            (Some(s), Some(pb)) => {
                let p = s.check(pb, &catalog.parse_ctx());
                (!p.is_empty()).then(|| p.join("; "))
            }
        };
        let tz = spec.as_ref().map(ScheduleSpec::tz).unwrap_or(Tz::UTC);
        let next = spec.as_ref().and_then(|s| CronSpec::parse(&s.cron).ok()).and_then(|c| {
            let base = rec.last_fire.as_deref().and_then(parse_time).unwrap_or_else(Utc::now).max(Utc::now());
            c.next_after(base, tz)
        });
        let last = match &rec.last_run {
            Some(r) => engine.store.run(r)?,
            None => None,
        };
        let show = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z").to_string();
        out.push(Listed {
            id: rec.id,
            playbook_title: pb.map(|p| p.title.clone()).unwrap_or_else(|| rec.playbook.clone()),
            playbook: rec.playbook.clone(),
            name: rec.name.clone(),
            origin: rec.origin.clone(),
            enabled: rec.enabled,
            cron: spec.as_ref().map(|s| s.cron.clone()).unwrap_or_default(),
            cron_words: spec.as_ref().and_then(|s| describe(&s.cron)),
            timezone: tz.name().to_string(),
            params: spec
                .as_ref()
                .map(|s| s.params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            missed: match spec.as_ref().map(|s| s.missed) {
                Some(Missed::RunOnce) => "run once".into(),
                _ => "skip".into(),
            },
            what_is_new: spec.as_ref().map(|s| s.what_is_new.clone()).unwrap_or_default(),
            notify: spec.as_ref().and_then(|s| s.notify.as_ref()).map(|n| n.webhook.clone()),
            next: if rec.enabled && problem.is_none() { next.map(show) } else { None },
            last_fire: rec.last_fire.as_deref().and_then(parse_time).map(show),
            last_run: rec.last_run.clone(),
            last_run_at: last.as_ref().and_then(|r| parse_time(&r.started_at)).map(show),
            last_state: last.map(|r| r.state),
            note: rec.note.clone(),
            last_notification: engine.store.last_notification(rec.id)?,
            problem,
        });
    }
    Ok(out)
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

pub fn format_time(t: DateTime<Utc>) -> String {
    crate::store::stamp(t)
}

/// How late a fire may start and still count as on time (not missed).
const GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// The loop that fires schedules.
#[derive(Debug)]
pub struct Scheduler {
    pub engine: Arc<Engine>,
    /// The address colleagues open, for permalinks in notifications (`http://host:8080`).
    pub public_url: String,
    pub webhook: crate::notify::Webhook,
    synced: std::sync::Mutex<Option<Arc<crate::catalog::Catalog>>>,
}

impl Scheduler {
    /// Webhook URLs are read from the engine's secrets.
    pub fn new(engine: Arc<Engine>, public_url: String) -> Scheduler {
        Scheduler {
            engine,
            public_url: public_url.trim_end_matches('/').to_string(),
            webhook: crate::notify::Webhook::default(),
            synced: std::sync::Mutex::new(None),
        }
    }

    /// Checks the schedules twice a second until the process ends.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.tick(Utc::now()) {
                    tracing::error!(error = %format!("{e:#}"), "scheduler");
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        })
    }

    /// Brings the declared schedules in the state database in line with the catalog.
    fn sync(&self) -> Result<()> {
        let catalog = self.engine.catalog();
        let mut last = self.synced.lock().map_err(|_| anyhow::anyhow!("scheduler lock poisoned"))?;
        if last.as_ref().is_some_and(|c| Arc::ptr_eq(c, &catalog)) {
            return Ok(());
        }
        for e in &catalog.playbooks {
            // A playbook with problems keeps its schedules as they were (or its last good ones).
            let Some(pb) = e.runnable() else { continue };
            let declared: Vec<(String, String, bool)> = pb
                .schedules
                .iter()
                .map(|d| (d.name.clone(), serde_json::to_string(&d.spec).unwrap_or_default(), d.enabled))
                .collect();
            self.engine.store.sync_declared(&pb.id, &declared)?;
        }
        *last = Some(catalog);
        Ok(())
    }

    /// Fires what is due at `now`. Runs go on in the background.
    pub fn tick(self: &Arc<Self>, now: DateTime<Utc>) -> Result<()> {
        self.sync()?;
        let catalog = self.engine.catalog();
        for rec in self.engine.store.schedules()? {
            if !rec.enabled {
                continue;
            }
            let Ok(spec) = serde_json::from_str::<ScheduleSpec>(&rec.spec) else { continue };
            let Ok(cron) = CronSpec::parse(&spec.cron) else { continue };
            let tz = spec.tz();
            let base = rec.last_fire.as_deref().or(Some(rec.created_at.as_str())).and_then(parse_time).unwrap_or(now);
            let (due, latest) = cron.fires_between(base, now, tz, 10_000);
            let Some(latest) = latest else { continue };
            let on_time = now - latest <= GRACE;
            let missed = due - usize::from(on_time);
            let mut fire = on_time || (missed > 0 && spec.missed == Missed::RunOnce);
            let mut note = (missed > 0).then(|| match spec.missed {
                Missed::RunOnce => format!("{missed} fire(s) missed while casebook was not running; ran once for them"),
                Missed::Skip => format!("{missed} fire(s) missed while casebook was not running were skipped"),
            });
            let Some(pb) = catalog.entry(&rec.playbook).and_then(|e| e.runnable()).cloned() else {
                self.engine.store.schedule_fired(
                    rec.id,
                    &format_time(latest),
                    None,
                    Some("not run: the playbook is missing or has problems"),
                )?;
                continue;
            };
            if fire {
                if let Some(prev) = &rec.last_run {
                    if let Some(r) = self.engine.store.run(prev)? {
                        if r.state == "queued" || r.state == "running" {
                            fire = false;
                            note = Some(format!(
                                "skipped the {} fire: the previous run was still going",
                                latest.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S")
                            ));
                        }
                    }
                }
            }
            if !fire {
                self.engine.store.schedule_fired(rec.id, &format_time(latest), None, note.as_deref())?;
                continue;
            }
            let run_id = uuid::Uuid::new_v4().simple().to_string();
            self.engine.store.schedule_fired(rec.id, &format_time(latest), Some(&run_id), note.as_deref())?;
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.fire(&rec, &spec, pb, latest, run_id).await {
                    tracing::error!(schedule = rec.id, error = %format!("{e:#}"), "scheduled run");
                }
            });
        }
        Ok(())
    }

    /// Starts a run of schedule `id` now, outside its timetable ("Run now" on the page).
    pub fn run_now(self: &Arc<Self>, id: i64) -> Result<String> {
        let store = &self.engine.store;
        let rec = store.schedule(id)?.ok_or_else(|| anyhow::anyhow!("no such schedule"))?;
        let spec: ScheduleSpec = serde_json::from_str(&rec.spec)?;
        let pb = self
            .engine
            .catalog()
            .entry(&rec.playbook)
            .and_then(|e| e.runnable())
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the playbook is missing or has problems"))?;
        if let Some(prev) = rec.last_run.as_deref().map(|r| store.run(r)).transpose()?.flatten() {
            if prev.state == "queued" || prev.state == "running" {
                anyhow::bail!("the previous run of this schedule is still going");
            }
        }
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        store.schedule_started(id, &run_id)?;
        let me = self.clone();
        let run = run_id.clone();
        tokio::spawn(async move {
            if let Err(e) = me.fire(&rec, &spec, pb, Utc::now(), run).await {
                tracing::error!(schedule = rec.id, error = %format!("{e:#}"), "scheduled run");
            }
        });
        Ok(run_id)
    }

    /// Runs schedule `rec` for the fire at `at`, then diffs and notifies.
    async fn fire(
        &self,
        rec: &ScheduleRecord,
        spec: &ScheduleSpec,
        pb: Arc<Playbook>,
        at: DateTime<Utc>,
        run_id: String,
    ) -> Result<()> {
        let catalog = self.engine.catalog();
        let cx = ParseCtx { tz: catalog.tz, now: at };
        let mut values = Vec::new();
        for p in &pb.params {
            match p.parse(spec.params.get(&p.name).map(String::as_str), &cx) {
                Ok(v) => values.push((p.name.clone(), v)),
                Err(e) => {
                    let msg = format!("not run: parameter `{}`: {e}", p.name);
                    self.engine.store.schedule_fired(rec.id, &format_time(at), None, Some(&msg))?;
                    return Ok(());
                }
            }
        }
        tracing::info!(schedule = %rec.name, playbook = %pb.id, run = %run_id, "schedule fired");
        let req = RunRequest {
            playbook: pb.clone(),
            values,
            section: None,
            who: format!("schedule “{}”", rec.name),
            source: "schedule".into(),
            schedule_id: Some(rec.id),
        };
        let outcome = self.engine.run_with_id(req, run_id.clone()).await?;
        let run = self.engine.store.run(&run_id)?;
        let succeeded = run.as_ref().is_some_and(|r| r.state == "succeeded");
        let mut new_rows: Vec<(String, usize)> = Vec::new();
        if succeeded {
            let prev = self.engine.store.previous_scheduled_run(rec.id, &run_id)?;
            for step in &spec.what_is_new {
                match self.engine.what_is_new(&run_id, prev.as_deref(), step).await {
                    Ok(n) => new_rows.push((step.clone(), n)),
                    Err(e) => tracing::warn!(run = %run_id, step, error = %format!("{e:#}"), "what is new"),
                }
            }
        }
        let Some(notify) = &spec.notify else { return Ok(()) };
        let rows = |step: &str| outcome.steps.iter().find(|s| s.id == step).and_then(|s| s.rows).unwrap_or(0);
        let should = !succeeded
            || match &notify.when {
                None => true,
                Some(w) => {
                    let n = if w.new_only {
                        new_rows.iter().find(|(s, _)| s == &w.step).map_or(0, |(_, n)| *n)
                    } else {
                        rows(&w.step)
                    };
                    n as u64 > w.more_than
                }
            };
        if !should {
            return Ok(());
        }
        let link = format!("{}/runs/{run_id}", self.public_url);
        let mut text = format!("casebook · {} (schedule “{}”): ", pb.title, rec.name);
        if succeeded {
            let mut parts: Vec<String> = Vec::new();
            for (step, n) in &new_rows {
                parts.push(format!("{step}: {n} new row{} ({} in all)", if *n == 1 { "" } else { "s" }, rows(step)));
            }
            if parts.is_empty() {
                for s in outcome.steps.iter().filter(|s| s.rows.is_some() && !s.id.ends_with("__new")) {
                    parts.push(format!("{}: {} rows", s.id, s.rows.unwrap_or(0)));
                }
            }
            text.push_str(&parts.join("; "));
        } else {
            let why = run.and_then(|r| r.error).unwrap_or_else(|| "unknown error".into());
            text.push_str(&format!("the run ended without result: {why}"));
        }
        text.push_str(&format!(". {link}"));
        let payload = serde_json::json!({ "username": "casebook", "text": text });
        let delivery = match self.engine.secrets.get(&notify.webhook) {
            Ok(url) => self.webhook.post(&url, &payload).await,
            Err(e) => crate::notify::Delivery { delivered: false, attempts: 0, detail: e },
        };
        tracing::info!(run = %run_id, delivered = delivery.delivered, attempts = delivery.attempts, detail = %delivery.detail, "notification");
        self.engine.store.add_notification(&run_id, rec.id, &notify.webhook, &delivery)?;
        Ok(())
    }
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
