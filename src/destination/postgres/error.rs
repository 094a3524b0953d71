//! Driver errors as text that is safe to log and store.

use std::error::Error as _;

/// Spells a driver error: the server's message, SQLSTATE and hint, or the
/// client-side error with its causes. The server's DETAIL field is left
/// out because it quotes row values ("Failing row contains (…)", "Key
/// (id)=(…) already exists"), and values never reach logs or
/// `_ferry.runs`.
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(hint) = db.hint() {
            text.push_str("; hint: ");
            text.push_str(hint);
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
