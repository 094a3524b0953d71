//! Which table a run may append to without an upsert.
//!
//! An upsert costs a staging table, an index probe per row and a second
//! write of every row. A table the run created contains only the run's own
//! rows, and most APIs return each key once per run, so its chunks are
//! appended straight into the table. The primary key still guards it.
//! When a chunk meets a key that is already there, the database rejects
//! the append, the chunk's transaction rolls back, and the chunk and
//! every later one of the run go through the upsert.

use super::TableRef;

/// One run's record of the table it created. Backends keep one per
/// destination value, which lives for one entity run.
#[derive(Debug, Default, Clone)]
pub struct FreshTable {
    created: Option<TableRef>,
    conflicted: bool,
}

impl FreshTable {
    /// Notes that the run's chunk creates `table`.
    pub fn created(&mut self, table: &TableRef) {
        self.created = Some(table.clone());
    }

    /// Returns whether a chunk for `table` may be appended without an upsert.
    pub fn allows_append(&self, table: &TableRef) -> bool {
        !self.conflicted && self.created.as_ref() == Some(table)
    }

    /// Notes that an append met a key already in the table.
    pub fn conflicted(&mut self) {
        self.conflicted = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> TableRef {
        TableRef {
            schema: "s".into(),
            table: name.into(),
        }
    }

    #[test]
    fn only_the_created_table_until_a_conflict() {
        let mut fresh = FreshTable::default();
        assert!(!fresh.allows_append(&table("a")));
        fresh.created(&table("a"));
        assert!(fresh.allows_append(&table("a")));
        assert!(!fresh.allows_append(&table("b")));
        fresh.conflicted();
        assert!(!fresh.allows_append(&table("a")));
        fresh.created(&table("a"));
        assert!(!fresh.allows_append(&table("a")));
    }
}
