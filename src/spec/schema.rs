//! JSON Schemas of the file format.

/// Each schema file name with its JSON text.
pub fn render() -> Vec<(&'static str, String)> {
    todo!()
}
