//! What sqlx's errors mean for a [`Store`](crate::Store), said once for both SQL
//! backends (the `sqlx` feature).

use crate::StoreError;

impl From<sqlx::Error> for StoreError {
    /// A uniqueness rule that was hit is a `Conflict` (a key, site or event that exists
    /// already); anything else means the database could not do it.
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(db.message().to_owned()),
            _ => StoreError::unavailable(error),
        }
    }
}

impl StoreError {
    /// For inserts into `keys`: its only foreign key is the site, so a violation means
    /// there is no such site.
    pub fn from_key_insert(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => error.into(),
        }
    }
}
