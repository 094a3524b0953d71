//! Column types inferred from records, and the rules for widening them.
