//! placeholder
use std::sync::Arc;
use crate::engine::Engine;
use crate::paths::Paths;
#[derive(Clone)]
pub struct AppState { pub engine: Arc<Engine> }
impl AppState { pub fn new(engine: Arc<Engine>, _paths: Paths) -> anyhow::Result<Self> { Ok(AppState { engine }) } }
pub fn app(state: AppState) -> axum::Router { axum::Router::new().with_state(state) }
