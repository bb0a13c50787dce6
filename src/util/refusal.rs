//! A request that cannot be done, said to the person who asked; kept apart from casebook's
//! own failures, whose details go to the log and never to a page.

/// Why something asked for was not done.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request does not fit (no such column, nothing ticked, a run still going): the web
    /// edge answers it as a 4xx with this text.
    #[error("{0}")]
    Refused(String),
    /// A failure of casebook's own (the state database, a file): logged, answered as a 500
    /// without its details.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl Refusal {
    pub fn refused(message: impl Into<String>) -> Refusal {
        Refusal::Refused(message.into())
    }
}

/// `Err(Refusal::Refused(..))` with a formatted message.
#[macro_export]
macro_rules! refuse {
    ($($arg:tt)*) => {
        return Err($crate::util::refusal::Refusal::Refused(format!($($arg)*)))
    };
}
