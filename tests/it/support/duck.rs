//! Reads DuckDB files written by the code under test.

use std::path::Path;

use ferry::destination::duckdb::DuckDbDestination;

/// Runs `sql` on the file and returns every cell as text (`NULL` for null).
pub fn query(path: &Path, sql: &str) -> Vec<Vec<String>> {
    try_query(path, sql).unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// Like [`query`], but returns the error (a missing table, say).
///
/// It goes through the process's shared database handle, because opening
/// the file a second time in one process fails.
pub fn try_query(path: &Path, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let destination =
        DuckDbDestination::open(&path.to_string_lossy()).map_err(|error| error.to_string())?;
    let connection = destination
        .connection()
        .map_err(|error| error.to_string())?;
    let text = format!("select columns(*)::varchar from ({sql})");
    let mut statement = connection
        .prepare(&text)
        .map_err(|error| error.to_string())?;
    let mut rows = statement.query([]).map_err(|error| error.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|error| error.to_string())? {
        let count = row.as_ref().column_count();
        let cells = (0..count).map(|index| {
            row.get::<_, Option<String>>(index)
                .expect("cells are cast to text")
                .unwrap_or_else(|| "NULL".to_string())
        });
        out.push(cells.collect());
    }
    Ok(out)
}
