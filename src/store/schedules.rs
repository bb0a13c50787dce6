//! Schedules (declared in playbooks or made by analysts), their fires, and the webhook
//! notifications sent after their runs.

use anyhow::Result;
use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{now, Store};

/// A schedule's row: its spec (the JSON of a schedule spec, `model/schedule.rs`) and its state.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleRecord {
    pub id: i64,
    pub playbook: String,
    pub name: String,
    /// `playbook` (declared in the playbook file) or `analyst` (made on a page).
    pub origin: String,
    pub spec: String,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: String,
    pub last_fire: Option<String>,
    pub last_run: Option<String>,
    pub note: Option<String>,
}

const SCHEDULE_COLUMNS: &str =
    "id, playbook, name, origin, spec, enabled, created_by, created_at, last_fire, last_run, note";

/// How a delivery went, for the state database and the schedules page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: bool,
    pub attempts: u32,
    /// What happened, without the URL: `HTTP 200`, `HTTP 502 three times`, …
    pub detail: String,
}

impl ScheduleRecord {
    /// The stored spec read as `T` (the model's schedule spec); None when it no longer reads.
    pub fn spec_as<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(&self.spec).ok()
    }
}

impl Store {
    /// Makes the declared schedules of `playbook` exactly `declared` (name, spec, enabled at
    /// first): new ones are added, changed specs updated (their on/off switch and history
    /// kept), removed ones deleted. Analysts' schedules are not touched.
    pub fn sync_declared(&self, playbook: &str, declared: &[(String, String, bool)]) -> Result<()> {
        self.with(|c| {
            let tx = c.unchecked_transaction()?;
            for (name, spec, enabled) in declared {
                tx.execute(
                    "INSERT INTO schedules (playbook, name, origin, spec, enabled, created_by, created_at)
                     VALUES (?1, ?2, 'playbook', ?3, ?4, 'playbook', ?5)
                     ON CONFLICT (playbook, name) DO UPDATE SET spec = excluded.spec WHERE origin = 'playbook'",
                    params![playbook, name, spec, enabled, now()],
                )?;
            }
            let names: Vec<&str> = declared.iter().map(|(n, _, _)| n.as_str()).collect();
            let mut st = tx.prepare("SELECT id, name FROM schedules WHERE playbook = ?1 AND origin = 'playbook'")?;
            let existing: Vec<(i64, String)> =
                st.query_map(params![playbook], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            drop(st);
            for (id, name) in existing {
                if !names.contains(&name.as_str()) {
                    tx.execute("DELETE FROM schedules WHERE id = ?1", params![id])?;
                }
            }
            tx.commit()
        })
    }

    /// Adds an analyst's schedule; fails when the playbook already has one of that name.
    pub fn add_schedule(&self, playbook: &str, name: &str, spec: &str, who: &str) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO schedules (playbook, name, origin, spec, enabled, created_by, created_at)
                 VALUES (?1, ?2, 'analyst', ?3, 1, ?4, ?5)",
                params![playbook, name, spec, who, now()],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        self.with(|c| {
            let mut st = c.prepare(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY playbook, name"))?;
            let rows = st.query_map([], schedule_row)?;
            rows.collect()
        })
    }

    pub fn schedule(&self, id: i64) -> Result<Option<ScheduleRecord>> {
        self.with(|c| {
            c.query_row(&format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?1"), params![id], schedule_row)
                .optional()
        })
    }

    pub fn set_schedule_enabled(&self, id: i64, enabled: bool) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE schedules SET enabled = ?2, note = NULL WHERE id = ?1", params![id, enabled]).map(|_| ())
        })
    }

    /// Deletes an analyst's schedule (declared ones are removed from their playbook file).
    pub fn delete_schedule(&self, id: i64) -> Result<bool> {
        self.with(|c| {
            c.execute("DELETE FROM schedules WHERE id = ?1 AND origin = 'analyst'", params![id]).map(|n| n > 0)
        })
    }

    /// Records that a schedule's fire at `at` was handled: started `run` (or none) with a note.
    pub fn schedule_fired(&self, id: i64, at: &str, run: Option<&str>, note: Option<&str>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE schedules SET last_fire = ?2, last_run = coalesce(?3, last_run), note = ?4 WHERE id = ?1",
                params![id, at, run, note],
            )
            .map(|_| ())
        })
    }

    /// Records a run started outside the timetable.
    pub fn schedule_started(&self, id: i64, run: &str) -> Result<()> {
        self.with(|c| c.execute("UPDATE schedules SET last_run = ?2 WHERE id = ?1", params![id, run]).map(|_| ()))
    }

    /// The latest succeeded run of schedule `schedule` before run `run`.
    pub fn previous_scheduled_run(&self, schedule: i64, run: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT id FROM runs WHERE schedule_id = ?1 AND state = 'succeeded' AND id != ?2
                   AND started_at <= (SELECT started_at FROM runs WHERE id = ?2)
                 ORDER BY started_at DESC LIMIT 1",
                params![schedule, run],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub fn add_notification(&self, run: &str, schedule: i64, target: &str, d: &Delivery) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO notifications (run_id, schedule_id, target, state, attempts, detail, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run,
                    schedule,
                    target,
                    if d.delivered { "sent" } else { "failed" },
                    d.attempts,
                    d.detail,
                    now()
                ],
            )
            .map(|_| ())
        })
    }

    /// The last notification of a schedule, as a line for the page.
    pub fn last_notification(&self, schedule: i64) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT state, attempts, detail, at, target FROM notifications WHERE schedule_id = ?1 ORDER BY id DESC LIMIT 1",
                params![schedule],
                |r| {
                    let (state, attempts, detail, at, target): (String, i64, String, String, String) =
                        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
                    Ok(format!(
                        "{} to {target} at {} ({detail}{})",
                        if state == "sent" { "sent" } else { "not sent" },
                        at.get(..19).unwrap_or(&at).replace('T', " "),
                        if attempts > 1 { format!(", {attempts} attempts") } else { String::new() }
                    ))
                },
            )
            .optional()
        })
    }
}

fn schedule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        id: r.get(0)?,
        playbook: r.get(1)?,
        name: r.get(2)?,
        origin: r.get(3)?,
        spec: r.get(4)?,
        enabled: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        last_fire: r.get(8)?,
        last_run: r.get(9)?,
        note: r.get(10)?,
    })
}
