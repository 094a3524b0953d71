//! Located problems in config files.

use serde::Serialize;

/// One problem, printed as `path:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file, as given (relative to the working directory when it was).
    pub path: String,
    /// 1-based; 0 when the problem has no line (a missing folder).
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.path, self.message),
            (line, 0) => write!(f, "{}:{}: {}", self.path, line, self.message),
            (line, column) => write!(f, "{}:{}:{}: {}", self.path, line, column, self.message),
        }
    }
}
