//! Database errors, classified once so that each edge can map them (404, 409, 503...).

/// What went wrong with a database operation, in terms the domain can act on.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No row matched (or it belongs to another org, which looks the same by design).
    #[error("not found")]
    NotFound,
    /// A unique constraint was violated; the constraint name says which.
    #[error("conflict on {constraint}")]
    Conflict { constraint: String },
    /// A foreign key pointed at a row that does not exist in this org.
    #[error("invalid reference ({constraint})")]
    InvalidReference { constraint: String },
    /// A CHECK constraint failed.
    #[error("invalid value ({constraint})")]
    CheckViolation { constraint: String },
    /// Row-level security refused a write (a row aimed at another org) or a privilege is missing.
    #[error("refused by row-level security or privileges")]
    Refused,
    /// The database could not be reached in time.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl DbError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }

    /// The constraint name of a conflict, if this is one.
    pub fn conflict_constraint(&self) -> Option<&str> {
        match self {
            DbError::Conflict { constraint } => Some(constraint),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => DbError::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => DbError::Unavailable(err),
            sqlx::Error::Database(db) => {
                let constraint = db.constraint().unwrap_or_default().to_owned();
                match db.code().as_deref() {
                    Some("23505") => DbError::Conflict { constraint },
                    Some("23503") => DbError::InvalidReference { constraint },
                    Some("23514") | Some("23502") | Some("22P02") | Some("22001") => {
                        DbError::CheckViolation { constraint }
                    }
                    Some("42501") => DbError::Refused,
                    // no_data_found, raised by functions whose subject does not exist
                    Some("P0002") => DbError::NotFound,
                    // admin_shutdown, crash_shutdown, cannot_connect_now, connection failures
                    Some(c) if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03") => {
                        DbError::Unavailable(err)
                    }
                    _ => DbError::Other(err),
                }
            }
            _ => DbError::Other(err),
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;
