//! The JSON Schemas editors use: generated from the loader's types, served over HTTP and
//! written by `casebook schema`, and in agreement with the shipped files.

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::common;

fn top_level_keys(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .filter(|l| !l.starts_with([' ', '#', '-']) && l.contains(':'))
        .map(|l| l.split(':').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_playbook_schema_knows_every_key_the_shipped_playbooks_use() {
    let schema: serde_json::Value = serde_json::from_str(&casebook::schema::playbook()).expect("json");
    assert_eq!(schema["additionalProperties"], serde_json::json!(false), "unknown keys are errors, as in the loader");
    assert_eq!(schema["required"], serde_json::json!(["title"]));
    let props = schema["properties"].as_object().expect("properties");
    for f in casebook::catalog::yaml_files(&common::repo().join("playbooks")) {
        for k in top_level_keys(&f) {
            assert!(props.contains_key(&k), "{}: `{k}` is not in the schema", f.display());
        }
    }
    let text = casebook::schema::playbook();
    for t in ["ip_list", "time_range", "select", "\"bar\"", "\"line\"", "rows_at_least", "options_query", "when"] {
        assert!(text.contains(t), "the schema mentions {t}");
    }
    let connector: serde_json::Value = serde_json::from_str(&casebook::schema::connector()).expect("json");
    let kinds = connector["anyOf"].as_array().expect("files or http");
    let resolve = |k: &serde_json::Value| -> serde_json::Value {
        match k["$ref"].as_str().and_then(|r| r.strip_prefix("#/$defs/")) {
            Some(name) => connector["$defs"][name].clone(),
            None => k.clone(),
        }
    };
    let resolved: Vec<serde_json::Value> = kinds.iter().map(resolve).collect();
    let required: Vec<&serde_json::Value> = resolved.iter().map(|k| &k["required"]).collect();
    assert!(required.contains(&&serde_json::json!(["format"])), "{required:?}");
    assert!(
        required.iter().any(|r| r.as_array().is_some_and(|a| a.contains(&serde_json::json!("time_column")))),
        "an http_table: {required:?}"
    );
    assert!(
        required.iter().any(|r| r.as_array().is_some_and(|a| a.contains(&serde_json::json!("base_url")))),
        "{required:?}"
    );
    assert!(casebook::schema::connector().contains("\"ndjson\""));
    let text = casebook::schema::playbook();
    for t in ["enrich", "score", "top_domains", "chunks", "schedules", "what_is_new"] {
        assert!(text.contains(t), "the schema mentions {t}");
    }
}

#[tokio::test]
async fn schemas_are_served_and_written() {
    let data = common::fresh_data();
    let engine = common::engine(data.path()).await;
    let app = common::app(casebook::web::AppState::new(engine, common::paths_with(data.path())).expect("state"));
    let r = app.oneshot(Request::get("/schema/playbook.json").body(Body::empty()).expect("req")).await.expect("resp");
    assert_eq!(r.headers()["content-type"], "application/schema+json");
    let served = String::from_utf8_lossy(&r.into_body().collect().await.expect("body").to_bytes()).to_string();
    assert_eq!(served, casebook::schema::playbook());
    let out = tempfile::tempdir().expect("tempdir");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_casebook"))
        .args(["schema", "--out"])
        .arg(out.path())
        .output()
        .expect("run");
    assert!(st.status.success());
    assert_eq!(std::fs::read_to_string(out.path().join("playbook.schema.json")).expect("file"), served);
    assert!(out.path().join("connector.schema.json").is_file());
}
