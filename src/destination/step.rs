//! The steps of a chunk write, which a destination's errors name.

/// The statement kinds a write is made of, named in error messages. Both
/// destinations share them; the run checks and table lock are PostgreSQL's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Begin,
    CheckRun,
    LockTable,
    CheckNames,
    CheckKeys,
    ReadCatalog,
    CreateSchema,
    CreateTable,
    AddColumn,
    WidenColumn,
    SaveColumns,
    Stage,
    Append,
    Upsert,
    Insert,
    MarkDeleted,
    DropStaging,
    Swap,
    MarkUnseen,
    SaveState,
    SaveRun,
    Commit,
}

impl Step {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Step::Begin => "begin transaction",
            Step::CheckRun => "check the run's status",
            Step::LockTable => "wait for the table's other writes",
            Step::CheckNames => "check table names",
            Step::CheckKeys => "check primary keys",
            Step::ReadCatalog => "read catalog",
            Step::CreateSchema => "create schema",
            Step::CreateTable => "create table",
            Step::AddColumn => "add column",
            Step::WidenColumn => "widen column",
            Step::SaveColumns => "save _ferry.columns",
            Step::Stage => "stage chunk in temporary table",
            Step::Append => "append",
            Step::Upsert => "upsert",
            Step::Insert => "insert",
            Step::MarkDeleted => "mark deleted rows",
            Step::DropStaging => "drop staging table",
            Step::Swap => "swap staging table in",
            Step::MarkUnseen => "mark unseen rows deleted",
            Step::SaveState => "save _ferry.state",
            Step::SaveRun => "save _ferry.runs",
            Step::Commit => "commit",
        }
    }
}
