//! The schedules page, and schedules made from a playbook's filled form.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use indexmap::IndexMap;
use serde_json::json;

use super::csrf;
use super::error::WebError;
use super::state::AppState;
use super::toolkit::{audit, join_multi, page, parse_form, render_page, runnable, UrlPath};
use crate::auth::Caller;
use crate::jobs::scheduler;
use crate::model::schedule::{self, Missed, NotifySpec, NotifyWhen, ScheduleSpec};
use crate::store::accounts::Role;
use crate::util::refusal::Refusal;

type Result<T> = std::result::Result<T, WebError>;

/// Every schedule with its next fire and last run.
#[derive(serde::Serialize)]
struct SchedulesPage<'a> {
    csrf: String,
    schedules: Vec<scheduler::Listed>,
    /// Whether this server runs the schedule loop.
    running: bool,
    tz: &'a str,
}

pub async fn page_all(State(state): State<AppState>, me: Caller, headers: HeaderMap) -> Result<Response> {
    let (token, cookie) = csrf::ensure(&headers);
    let sight = super::toolkit::Sight::new(&state, &me)?;
    let mut list = scheduler::list(&state.engine, None).map_err(WebError::Internal)?;
    list.retain(|s| sight.playbook(&s.playbook));
    let html = render_page(
        &state,
        &me,
        "schedules.html",
        SchedulesPage {
            csrf: token,
            schedules: list,
            running: state.scheduler.is_some(),
            tz: state.engine.tz().name(),
        },
    )?;
    Ok(page(html, cookie))
}

/// The timetable the schedule form describes: a preset plus a time of day, or cron text.
fn cron_from_form(f: &HashMap<String, String>) -> std::result::Result<String, String> {
    let get = |k: &str| f.get(k).map(|s| s.trim()).unwrap_or("");
    let at = || -> std::result::Result<(u32, u32), String> {
        let t = get("_sched_at");
        let (h, m) = t.split_once(':').ok_or_else(|| "enter a time of day such as 06:00".to_string())?;
        match (h.trim().parse::<u32>(), m.trim().parse::<u32>()) {
            (Ok(h), Ok(m)) if h < 24 && m < 60 => Ok((h, m)),
            _ => Err(format!("`{t}` is not a time of day such as 06:00")),
        }
    };
    Ok(match get("_sched_every") {
        "15m" => "*/15 * * * *".into(),
        "hour" => "0 * * * *".into(),
        "day" => {
            let (h, m) = at()?;
            format!("{m} {h} * * *")
        }
        "weekday" => {
            let (h, m) = at()?;
            format!("{m} {h} * * 1-5")
        }
        "monday" => {
            let (h, m) = at()?;
            format!("{m} {h} * * 1")
        }
        "cron" => {
            let c = get("_sched_cron");
            schedule::CronSpec::parse(c)?;
            c.to_string()
        }
        other => return Err(format!("unknown choice `{other}`")),
    })
}

/// Creates a schedule from the playbook form (the parameters as filled in, relative windows
/// kept relative) plus the schedule fields. Answers JSON: where to go, or what to correct.
pub async fn create(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
    me: Caller,
    csrf::CheckedForm(form): csrf::CheckedForm,
) -> Result<Response> {
    let given = join_multi(&form);
    let pb = runnable(&state, &me, &id, "be scheduled")?;
    let catalog = state.engine.catalog();
    let cx = catalog.parse_ctx();
    let mut fields: HashMap<String, String> = HashMap::new();
    if let Err(errors) = parse_form(&pb, &given, &cx) {
        fields.extend(errors);
    }
    let name = given.get("_sched_name").map(|s| s.trim().to_string()).unwrap_or_default();
    if name.is_empty() || name.chars().count() > 80 {
        fields.insert("_sched_name".into(), "give the schedule a name (up to 80 characters)".into());
    }
    let cron = match cron_from_form(&given) {
        Ok(c) => c,
        Err(e) => {
            fields.insert("_sched_when".into(), e);
            String::new()
        }
    };
    let what_is_new: Vec<String> = given
        .get("_sched_new")
        .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    let webhook = given.get("_sched_webhook").map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let notify = webhook.map(|webhook| NotifySpec {
        webhook,
        when: given.get("_sched_notify_step").map(|s| s.trim()).filter(|s| !s.is_empty()).map(|step| NotifyWhen {
            step: step.to_string(),
            more_than: 0,
            new_only: what_is_new.iter().any(|s| s == step),
        }),
    });
    let params: IndexMap<String, String> = pb
        .params
        .iter()
        .filter_map(|p| given.get(&p.name).filter(|v| !v.trim().is_empty()).map(|v| (p.name.clone(), v.clone())))
        .collect();
    let spec = ScheduleSpec {
        cron,
        timezone: given
            .get("_sched_tz")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| catalog.tz.name().to_string()),
        params,
        missed: if given.get("_sched_missed").map(String::as_str) == Some("run_once") {
            Missed::RunOnce
        } else {
            Missed::Skip
        },
        what_is_new,
        notify,
    };
    if fields.is_empty() {
        let problems = spec.check(pb.as_ref(), &cx);
        if !problems.is_empty() {
            fields.insert("_sched_when".into(), problems.join("; "));
        }
    }
    if !fields.is_empty() {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "errors": fields }))).into_response());
    }
    let text = serde_json::to_string(&spec).map_err(|e| WebError::Internal(e.into()))?;
    match state.engine.store.add_schedule(&pb.id, &name, &text, &me.name) {
        Ok(sid) => {
            audit(&state, &me.name, "schedule-add", &pb.id, json!({ "schedule": sid, "name": name, "spec": spec }));
            tracing::info!(schedule = sid, playbook = %pb.id, cron = %spec.cron, "schedule created");
            Ok(Json(json!({ "location": format!("/schedules#schedule-{sid}") })).into_response())
        }
        Err(_) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                json!({ "errors": { "_sched_name": format!("this playbook already has a schedule named “{name}”") } }),
            ),
        )
            .into_response()),
    }
}

/// Schedule `sid`, if `me` may change it: an analyst their own, an administrator any.
fn schedule_of(state: &AppState, me: &Caller, sid: i64) -> Result<crate::store::schedules::ScheduleRecord> {
    let rec = state
        .engine
        .store
        .schedule(sid)
        .map_err(WebError::Internal)?
        .ok_or_else(|| WebError::NotFound("No such schedule.".into()))?;
    if rec.created_by != me.name && !me.may(Role::Admin) {
        return Err(WebError::Forbidden(format!(
            "“{}” is {}'s schedule; only they or an administrator may change it.",
            rec.name, rec.created_by
        )));
    }
    Ok(rec)
}

pub async fn set_enabled(
    State(state): State<AppState>,
    UrlPath((sid, action)): UrlPath<(i64, String)>,
    me: Caller,
    csrf::CheckedForm(_): csrf::CheckedForm,
) -> Result<Response> {
    let rec = schedule_of(&state, &me, sid)?;
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        _ => return Err(WebError::NotFound("No such action.".into())),
    };
    state.engine.store.set_schedule_enabled(rec.id, enabled).map_err(WebError::Internal)?;
    audit(&state, &me.name, &format!("schedule-{action}"), &rec.playbook, json!({ "schedule": sid, "name": rec.name }));
    // Switching on starts from now: fires missed while it was off are not "missed".
    if enabled {
        let now = scheduler::format_time(chrono::Utc::now());
        state.engine.store.schedule_fired(rec.id, &now, None, None).map_err(WebError::Internal)?;
    }
    Ok(Redirect::to(&format!("/schedules#schedule-{sid}")).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    UrlPath(sid): UrlPath<i64>,
    me: Caller,
    csrf::CheckedForm(_): csrf::CheckedForm,
) -> Result<Response> {
    let rec = schedule_of(&state, &me, sid)?;
    if rec.origin != "analyst" {
        return Err(WebError::BadRequest(format!(
            "“{}” is declared in the playbook file; remove it there (or switch it off here).",
            rec.name
        )));
    }
    state.engine.store.delete_schedule(sid).map_err(WebError::Internal)?;
    audit(&state, &me.name, "schedule-delete", &rec.playbook, json!({ "schedule": sid, "name": rec.name }));
    Ok(Redirect::to("/schedules").into_response())
}

pub async fn run_now(
    State(state): State<AppState>,
    UrlPath(sid): UrlPath<i64>,
    me: Caller,
    csrf::CheckedForm(_): csrf::CheckedForm,
) -> Result<Response> {
    let rec = schedule_of(&state, &me, sid)?;
    let Some(scheduler) = state.scheduler.clone() else {
        return Err(WebError::BadRequest("This server runs no scheduler.".into()));
    };
    match scheduler.run_now(rec.id) {
        Ok(_) => {
            audit(&state, &me.name, "schedule-run-now", &rec.playbook, json!({ "schedule": sid, "name": rec.name }));
            Ok(Redirect::to(&format!("/schedules#schedule-{sid}")).into_response())
        }
        Err(Refusal::Refused(m)) => Err(WebError::BadRequest(m)),
        Err(Refusal::Failed(e)) => Err(WebError::Internal(e)),
    }
}
