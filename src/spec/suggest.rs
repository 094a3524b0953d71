//! Did-you-mean hints for misspelt names.

/// Returns the candidate closest to `word`, when one is close enough to be a
/// likely misspelling: the same word in another case, or at most one edit
/// per three characters (at least one).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lowered = word.to_lowercase();
    let allowed = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let distance = strsim::damerau_levenshtein(&lowered, &candidate.to_lowercase());
        if distance > allowed {
            continue;
        }
        if best.is_none_or(|(best_distance, _)| distance < best_distance) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Formats `; did you mean "X"?` for the closest candidate, or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match closest(word, candidates) {
        Some(candidate) => format!("; did you mean \"{candidate}\"?"),
        None => String::new(),
    }
}

/// Formats the hint for an unknown name: did-you-mean when a candidate is
/// close, else the list of accepted names (or a note that there are none).
pub fn hint(word: &str, candidates: &[&str], what: &str) -> String {
    if let Some(candidate) = closest(word, candidates.iter().copied()) {
        return format!("; did you mean \"{candidate}\"?");
    }
    if candidates.is_empty() {
        return format!("; there are no {what}");
    }
    format!("; expected one of: {}", candidates.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_edit_is_suggested() {
        assert_eq!(closest("typ", ["type", "cursor"]), Some("type"));
        assert_eq!(closest("curser", ["none", "cursor"]), Some("cursor"));
        assert_eq!(closest("strpe", ["stripe", "close"]), Some("stripe"));
    }

    #[test]
    fn case_difference_is_suggested() {
        assert_eq!(
            closest("connector", ["Connector", "Flow"]),
            Some("Connector")
        );
        assert_eq!(closest("utc", ["UTC", "GMT"]), Some("UTC"));
    }

    #[test]
    fn transposition_counts_as_one_edit() {
        assert_eq!(
            closest("America/New_Yrok", ["America/New_York"]),
            Some("America/New_York")
        );
    }

    #[test]
    fn distant_words_are_not_suggested() {
        assert_eq!(closest("foo", ["records", "path"]), None);
        assert_eq!(closest("ab", ["xy"]), None);
    }

    #[test]
    fn hint_lists_candidates_when_none_is_close() {
        assert_eq!(
            hint("zzz", &["path", "records"], "fields"),
            "; expected one of: path, records"
        );
        assert_eq!(hint("zzz", &[], "fields"), "; there are no fields");
        assert_eq!(hint("pth", &["path"], "fields"), "; did you mean \"path\"?");
    }
}
