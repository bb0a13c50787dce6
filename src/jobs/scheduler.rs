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

use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::engine::{Engine, RunRequest};
use crate::model::params::{parse_all, ParseCtx};
use crate::model::schedule::{describe, CronSpec, Missed, ScheduleSpec};
use crate::playbook::Playbook;
use crate::refuse;
use crate::store::runs::RunState;
use crate::store::schedules::Delivery;
use crate::store::schedules::ScheduleRecord;
use crate::util::refusal::Refusal;

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
    pub last_state: Option<RunState>,
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
        let spec: Option<ScheduleSpec> = rec.spec_as();
        let pb = catalog.entry(&rec.playbook).and_then(|e| e.runnable());
        let problem = match (&spec, pb) {
            (None, _) => Some("the stored schedule cannot be read".to_string()),
            (_, None) => Some("the playbook is missing or has problems".to_string()),
            (Some(s), Some(pb)) => {
                let p = s.check(pb.as_ref(), &catalog.parse_ctx());
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
    pub webhook: crate::jobs::notify::Webhook,
    synced: std::sync::Mutex<Option<Arc<crate::catalog::Catalog>>>,
}

impl Scheduler {
    /// Webhook URLs are read from the engine's secrets.
    pub fn new(engine: Arc<Engine>, public_url: String) -> Scheduler {
        Scheduler {
            engine,
            public_url: public_url.trim_end_matches('/').to_string(),
            webhook: crate::jobs::notify::Webhook::default(),
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
            let Some(spec) = rec.spec_as::<ScheduleSpec>() else { continue };
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
                        if r.state.is_active() {
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
    pub fn run_now(self: &Arc<Self>, id: i64) -> std::result::Result<String, Refusal> {
        let store = &self.engine.store;
        let Some(rec) = store.schedule(id)? else { refuse!("no such schedule") };
        let Some(spec) = rec.spec_as::<ScheduleSpec>() else { refuse!("the stored schedule cannot be read") };
        let Some(pb) = self.engine.catalog().entry(&rec.playbook).and_then(|e| e.runnable()).cloned() else {
            refuse!("the playbook is missing or has problems")
        };
        if let Some(prev) = rec.last_run.as_deref().map(|r| store.run(r)).transpose()?.flatten() {
            if prev.state.is_active() {
                refuse!("the previous run of this schedule is still going");
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
        let values = match parse_all(&pb.params, |name| spec.params.get(name).map(String::as_str), &cx) {
            Ok(values) => values,
            Err(errors) => {
                let (name, e) = errors.first().cloned().unwrap_or_default();
                let msg = format!("not run: parameter `{name}`: {e}");
                self.engine.store.schedule_fired(rec.id, &format_time(at), None, Some(&msg))?;
                return Ok(());
            }
        };
        tracing::info!(schedule = %rec.name, playbook = %pb.id, run = %run_id, "schedule fired");
        let req = RunRequest::new(pb.clone(), values, format!("schedule “{}”", rec.name), "schedule")
            .scheduled(Some(rec.id))
            .keeping(Some(spec.what_is_new.clone()));
        let outcome = self.engine.run_with_id(req, run_id.clone()).await?;
        let run = self.engine.store.run(&run_id)?;
        let succeeded = run.as_ref().is_some_and(|r| r.state == RunState::Succeeded);
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
            Err(e) => Delivery { delivered: false, attempts: 0, detail: e },
        };
        tracing::info!(run = %run_id, delivered = delivery.delivered, attempts = delivery.attempts, detail = %delivery.detail, "notification");
        self.engine.store.add_notification(&run_id, rec.id, &notify.webhook, &delivery)?;
        Ok(())
    }
}
